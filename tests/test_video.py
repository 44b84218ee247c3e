"""repsr upscale on videos: clips made here with PyAV (H.264/FFV1 video, AAC audio, SRT subtitles)."""

from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av", reason="video needs PyAV (pip install 'repsr[video]'; the test extra has it)")

from repsr import RepSRNet, reparameterize_model  # noqa: E402
from repsr.cli import main  # noqa: E402
from repsr.errors import RepsrError  # noqa: E402
from repsr.export import save_deploy  # noqa: E402
from repsr.inference import Upscaler, upscale  # noqa: E402
from repsr.loading import load_model  # noqa: E402
from repsr.video import VideoOptions, check_options, output_container, upscale_video  # noqa: E402

MODEL = "repsr-x2-m4c16"  # the bundled x2 model: real weights, and fast on 64x48 frames
RATE = Fraction(30000, 1001)
AUDIO_RATE = 48000


def picture(i: int, w: int, h: int) -> np.ndarray:
    """A moving picture with edges and gradients: something codecs and the network both have work on."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[..., 0] = 128 + 100 * np.sin((xx + 2 * i) / 6)
    img[..., 1] = 128 + 100 * np.cos((yy - i) / 5)
    img[..., 2] = 60 + 3 * xx
    img[(xx - 20 - i) ** 2 + (yy - h / 2) ** 2 < 60] = (250, 240, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_clip(path, frames=12, size=(64, 48), fmt=None, vcodec="libx264", pix_fmt="yuv420p", audio="aac",
              rotation=0, pts=None, subtitles=None, color_range=None, options=None, time_base=None, attachment=None):
    """Write a test clip; returns the RGB frames as encoded (before the codec's loss)."""
    w, h = size
    out = av.open(str(path), "w", format=fmt)
    v = out.add_stream(vcodec, rate=RATE)
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    v.options = options or {}
    if time_base is not None:
        v.codec_context.time_base = time_base
    if color_range:
        v.codec_context.color_range = color_range
    if rotation:
        v.set_display_rotation(rotation)
    a = None
    if audio:
        a = out.add_stream(audio, rate=AUDIO_RATE)
        a.layout = "stereo"
    if attachment:
        out.add_attachment(attachment[0], "application/x-truetype-font", attachment[1])
    subs = None
    if subtitles:
        subs_in = av.open(str(subtitles))
        subs = (subs_in, out.add_stream_from_template(subs_in.streams[0]))
    rgb = []
    for i in range(frames):
        img = picture(i, w, h)
        rgb.append(img)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame = frame.reformat(format=pix_fmt, dst_colorspace="ITU601",
                               dst_color_range="JPEG" if color_range == 2 else "MPEG")
        frame.pts = pts[i] if pts else i
        for packet in v.encode(frame):
            out.mux(packet)
    for packet in v.encode():
        out.mux(packet)
    if a is not None:
        seconds = frames / RATE if not pts else (pts[-1] + pts[1] - pts[0]) * v.codec_context.time_base
        total = int(AUDIO_RATE * float(seconds))
        for start in range(0, total, 1024):
            t = np.arange(start, min(total, start + 1024)) / AUDIO_RATE
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = AUDIO_RATE, start
            for packet in a.encode(frame):
                out.mux(packet)
        for packet in a.encode():
            out.mux(packet)
    if subs is not None:
        for packet in subs[0].demux(subs[0].streams[0]):
            if packet.size:
                packet.stream = subs[1]
                out.mux(packet)
        subs[0].close()
    out.close()
    return rgb


def decode(path, fmt="rgb24", colorspace="ITU601", color_range="MPEG"):
    """Frames (as RGB arrays), their times in seconds, and the first frame (for its tags)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames, times, first = [], [], None
        for frame in c.decode(stream):
            first = first or frame
            frames.append(frame.to_ndarray(format=fmt, src_colorspace=colorspace, src_color_range=color_range))
            times.append(float(frame.pts * frame.time_base))
    return frames, times, first


def packets(path, kind):
    with av.open(str(path)) as c:
        stream = next(s for s in c.streams if s.type == kind)
        data = [bytes(p) for p in c.demux(stream) if p.size]
        duration = float(stream.duration * stream.time_base) if stream.duration else None
        return data, duration, stream


def chroma_420(image, color_range="MPEG"):
    """``image`` through RGB -> yuv420p (BT.601) -> RGB: what 4:2:0 loses without any codec."""
    yuv = av.VideoFrame.from_ndarray(image).reformat(format="yuv420p", dst_colorspace="ITU601",
                                                       dst_color_range=color_range)
    return yuv.to_ndarray(format="rgb24", src_colorspace="ITU601", src_color_range=color_range)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    path = folder / "clip.mp4"
    make_clip(path, frames=12, rotation=90)
    return path


def test_mp4_keeps_frames_rate_timing_audio_and_rotation(clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["upscale", str(clip), "-o", str(out), "--model", MODEL]) == 0
    err = capsys.readouterr().err
    assert "1 upscaled (1 video)" in err and "12 frames" in err
    result = out / "clip_x2.mp4"
    assert sorted(p.name for p in out.iterdir()) == ["clip_x2.mp4"]

    src_frames, src_times, _ = decode(clip)
    frames, times, first = decode(result)
    assert len(frames) == len(src_frames) == 12
    assert frames[0].shape == (96, 128, 3)
    np.testing.assert_allclose(times, src_times, atol=1e-3)  # the input's time stamps
    with av.open(str(result)) as c, av.open(str(clip)) as s:
        v = c.streams.video[0]
        assert v.average_rate == s.streams.video[0].average_rate == RATE
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert v.metadata["encoder"].startswith("repsr upscale x2")
    assert first.rotation == 90  # the display matrix is carried over
    assert int(first.color_range) == 1 and int(first.colorspace) in (5, 6)  # limited range, BT.601 tagged

    audio_in, seconds_in, _ = packets(clip, "audio")
    audio_out, seconds_out, stream = packets(result, "audio")
    assert audio_out == audio_in  # copied packet for packet, not re-encoded
    assert stream.codec_context.name == "aac" and abs(seconds_out - seconds_in) < 1e-3
    assert abs(seconds_out - 12 / RATE) < 0.03

    # against upscaling the decoded frames as images: within the codec's loss. At CRF 0 H.264 is lossless, and all
    # that is left is the 4:2:0 chroma of yuv420p: exactly what RGB -> yuv420p -> RGB loses. At CRF 18 a little more.
    model = load_model(MODEL)
    images = [upscale(s, model) for s in src_frames]
    assert min(psnr(f, i) for f, i in zip(frames, images, strict=True)) > 30
    assert main(["upscale", str(clip), "-o", str(out), "--model", MODEL, "--crf", "0", "--suffix", "_crf0"]) == 0
    lossless, _, _ = decode(out / "clip_crf0.mp4")
    for got, image in zip(lossless, images, strict=True):
        assert abs(psnr(got, image) - psnr(chroma_420(image), image)) < 0.05


def test_lossless_output_equals_the_image_path(clip, tmp_path):
    """FFV1 (in RGB by default) is lossless: every frame is what `repsr upscale` makes of the decoded frame as an image,
    tiled or not, one frame per call or batched."""
    src_frames, _, _ = decode(clip)
    model = load_model(MODEL)
    expected = [upscale(f, model) for f in src_frames]
    for extra in ([], ["--tile", "16", "--batch", "3"]):
        out = tmp_path / f"out{len(extra)}"
        assert main(["upscale", str(clip), "-o", str(out), "--model", MODEL, "--codec", "ffv1", *extra]) == 0
        frames, _, _ = decode(out / "clip_x2.mkv", colorspace=None, color_range=None)
        for got, want in zip(frames, expected, strict=True):
            if not extra:
                np.testing.assert_array_equal(got, want)  # bit for bit
            diff = np.abs(got.astype(int) - want.astype(int))  # tiles: fp32 summation order may flip a rare level
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_tiling_and_precision_as_for_images(clip):
    x = np.stack(decode(clip)[0][:3])
    net = RepSRNet(upscale=2, num_feat=8, num_block=2).eval()
    net = reparameterize_model(net)
    whole = Upscaler(net, "cpu", "fp64", tile=0).frames(x)  # no tiles: the batched path
    tiled = Upscaler(net, "cpu", "fp64", tile=7).frames(x)
    np.testing.assert_array_equal(whole, tiled)  # fp64: tiles are bit-identical, as for images
    np.testing.assert_array_equal(whole[1], Upscaler(net, "cpu", "fp64")(x[1]))
    np.testing.assert_array_equal(np.stack([Upscaler(net, "cpu", "fp64", tile=0)(f) for f in x]), whole)


def test_mkv_copies_subtitles_and_keeps_variable_frame_rate(tmp_path):
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,400\nhello\n\n2\n00:00:00,400 --> 00:00:00,700\nworld\n")
    clip = tmp_path / "vfr.mkv"
    pts = [0, 40, 80, 200, 240, 400, 440, 480]  # milliseconds: a variable frame rate
    make_clip(clip, frames=len(pts), pts=pts, subtitles=srt, time_base=Fraction(1, 1000),
              options={"bf": "0"}, attachment=("font.ttf", b"not really a font" * 9))
    assert main(["upscale", str(clip), "--model", MODEL]) == 0  # no -o: beside the input
    result = tmp_path / "vfr_x2.mkv"
    _, times, _ = decode(result)
    np.testing.assert_allclose(times, np.array(pts) / 1000, atol=1e-3)
    subs_in, _, _ = packets(clip, "subtitle")
    subs_out, _, stream = packets(result, "subtitle")
    assert subs_out == subs_in and stream.codec_context.name in ("subrip", "srt")
    assert packets(result, "audio")[0] == packets(clip, "audio")[0]
    with av.open(str(result)) as c:
        (font,) = c.streams.attachments  # e.g. the fonts of ASS subtitles
        assert font.data == b"not really a font" * 9 and font.metadata["filename"] == "font.ttf"


def test_full_range_input_stays_full_range(tmp_path):
    clip = tmp_path / "full.mkv"
    make_clip(clip, frames=4, audio=None, color_range=2)
    out = tmp_path / "out"
    assert main(["upscale", str(clip), "-o", str(out), "--model", MODEL, "--crf", "0"]) == 0
    frames, _, first = decode(out / "full_x2.mkv", color_range="JPEG")
    assert int(first.color_range) == 2  # tagged full range, and converted as full range both ways:
    src, _, _ = decode(clip, color_range="JPEG")
    model = load_model(MODEL)
    for got, image in zip(frames, (upscale(s, model) for s in src), strict=True):
        assert abs(psnr(got, image) - psnr(chroma_420(image, "JPEG"), image)) < 0.05


def test_containers_and_codecs(tmp_path):
    clip = tmp_path / "c.mkv"
    make_clip(clip, frames=6, audio=None)
    model = Upscaler(MODEL, "cpu")
    for name, codec in (("c.webm", "vp9"), ("c.mov", "h265"), ("c.gif", "gif")):
        result = upscale_video(clip, tmp_path / name, model, VideoOptions(codec=codec, preset="ultrafast"
                               if codec == "h265" else None), mark="repsr upscale x2 (t)")
        frames, _, _ = decode(result.output, colorspace=None, color_range=None)
        assert result.frames == len(frames) == 6 and frames[0].shape == (96, 128, 3), name
    # the container changes only where it cannot hold the codec
    assert output_container(clip.with_suffix(".mp4"), None) == (".mp4", "h264")
    assert output_container(clip.with_suffix(".webm"), None) == (".webm", "vp9")
    assert output_container(clip.with_suffix(".mov"), "ffv1") == (".mkv", "ffv1")
    assert output_container(clip.with_suffix(".gif"), "h264") == (".mp4", "h264")
    assert output_container(clip.with_suffix(".avi"), None) == (".mkv", "h264")


def test_audio_the_container_cannot_take_is_reencoded(clip, tmp_path):
    model = Upscaler(MODEL, "cpu")
    result = upscale_video(clip, tmp_path / "c.webm", model)  # WebM takes Opus/Vorbis, not AAC
    assert any("re-encoded to Opus" in n for n in result.notes)
    _, seconds, stream = packets(result.output, "audio")
    assert stream.codec_context.name == "opus"
    with av.open(str(result.output)) as c:
        assert abs(c.duration / 1e6 - 12 / RATE) < 0.05


def decoded_samples(path) -> int:
    """Audio samples (per channel) the first audio stream decodes to, as a player plays them."""
    with av.open(str(path)) as c:
        return sum(frame.samples for frame in c.decode(c.streams.audio[0]))


@pytest.mark.parametrize("batch", [3, 8])
def test_every_frame_of_a_partial_last_batch_is_kept(tmp_path, batch):
    """7 frames in batches of 3 (3 + 3 + 1) or of 8 (one short batch): every frame comes out, in order, each the
    image path's upscale of its input frame (FFV1 is lossless)."""
    clip = tmp_path / "seven.mkv"
    make_clip(clip, frames=7, audio="aac")  # audio packets interleave with the frames
    src_frames, src_times, _ = decode(clip)
    assert len(src_frames) == 7
    model = Upscaler(MODEL, "cpu")
    result = upscale_video(clip, tmp_path / "seven_x2.mkv", model, VideoOptions(codec="ffv1", batch=batch))
    frames, times, _ = decode(result.output, colorspace=None, color_range=None)
    assert result.frames == len(frames) == 7
    np.testing.assert_allclose(times, src_times, atol=1e-3)
    for got, src in zip(frames, src_frames, strict=True):
        np.testing.assert_array_equal(got, model(src))


@pytest.mark.parametrize("audio", ["pcm_s16le", "aac"])
def test_reencoded_audio_keeps_every_sample(tmp_path, audio):
    """Audio WebM cannot hold (PCM, AAC) is re-encoded to Opus: it decodes to exactly as many samples as the input
    does (WebM records Opus's priming and final padding, and FFmpeg trims both), so an encoder left unflushed at
    the end (about 20 ms lost) shows."""
    clip = tmp_path / f"in.{'mkv' if audio.startswith('pcm') else 'mp4'}"
    make_clip(clip, frames=7, audio=audio)
    model = Upscaler(MODEL, "cpu")
    result = upscale_video(clip, tmp_path / "out.webm", model, VideoOptions(preset="8"))
    assert any(f"({audio}) re-encoded to Opus" in n for n in result.notes), result.notes
    _, _, stream = packets(result.output, "audio")
    assert stream.codec_context.name == "opus"
    expected = decoded_samples(clip)
    if audio.startswith("pcm"):
        assert expected == int(AUDIO_RATE * 7 / RATE)  # what make_clip wrote: PCM decodes to exactly that
    assert decoded_samples(result.output) == expected


def test_pcm_audio_into_mp4_is_reencoded_to_aac_and_keeps_its_samples(tmp_path):
    """PCM audio (here from MKV) into MP4: the output is written, its audio (AAC, or PCM if MP4 can hold it) decodes
    to at least every input sample and at most one AAC frame (1024 samples) of end padding more."""
    clip = tmp_path / "pcm.mkv"
    make_clip(clip, frames=7, audio="pcm_s16le")
    model = Upscaler(MODEL, "cpu")
    result = upscale_video(clip, tmp_path / "pcm_x2.mp4", model, VideoOptions(preset="ultrafast"))
    expected = decoded_samples(clip)
    assert expected <= decoded_samples(result.output) < expected + 1024
    assert any("re-encoded to AAC" in note for note in result.notes)  # MP4 takes PCM at the header, fails at the end


def test_odd_sizes_are_cropped_for_yuv420(tmp_path):
    clip = tmp_path / "odd.mkv"
    make_clip(clip, frames=2, size=(33, 25), vcodec="ffv1", pix_fmt="yuv444p", audio=None)
    x3 = save_deploy(reparameterize_model(RepSRNet(upscale=3, num_feat=4, num_block=1)), tmp_path / "x3.safetensors")
    result = upscale_video(clip, tmp_path / "odd_x3.mp4", Upscaler(x3, "cpu"))
    assert decode(result.output)[0][0].shape == (74, 98, 3)  # 75x99 -> even
    assert any("cropped" in n for n in result.notes)


def test_interrupted_run_leaves_no_output(clip, tmp_path, monkeypatch, capsys):
    calls = []
    real = Upscaler.frames

    def interrupted(self, frames):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, frames)

    monkeypatch.setattr(Upscaler, "frames", interrupted)
    out = tmp_path / "out"
    assert main(["upscale", str(clip), "-o", str(out), "--model", MODEL]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # neither the final name nor a temporary file


def test_failing_encoder_leaves_no_output(clip, tmp_path, monkeypatch, capsys):
    from repsr.video import colour

    def broken(*args, **kwargs):
        raise av.FFmpegError(22, "Invalid argument")

    monkeypatch.setattr(colour.FrameEncoder, "__call__", broken)
    out = tmp_path / "out"
    assert main(["upscale", str(clip), "-o", str(out), "--model", MODEL]) == 1
    err = capsys.readouterr().err
    assert f"repsr: {clip}: " in err and "Invalid argument" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_folders_mix_images_and_videos_and_earlier_outputs_are_left_alone(clip, tmp_path, capsys):
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    from repsr.images import write_image

    write_image(folder / "still.png", picture(0, 20, 16))
    assert main(["upscale", str(folder), "--model", MODEL]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4", "clip_x2.mp4", "still.png", "still_x2.png"]
    capsys.readouterr()
    # again: the outputs are recognized (their tags) and neither upscaled twice over nor redone
    assert main(["upscale", str(folder), "--model", MODEL]) == 0
    err = capsys.readouterr().err
    assert "2 skipped" in err and "2 earlier outputs" in err
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4", "clip_x2.mp4", "still.png", "still_x2.png"]


def test_video_options_are_checked_first(tmp_path):
    with pytest.raises(RepsrError, match="--crf 70 is out of range"):
        check_options(VideoOptions(codec="h264", crf=70))
    with pytest.raises(RepsrError, match="--preset 'fastest' is unknown"):
        check_options(VideoOptions(codec="h264", preset="fastest"))
    with pytest.raises(RepsrError, match="ffv1 has no quality setting"):
        check_options(VideoOptions(codec="ffv1", crf=10))
    with pytest.raises(RepsrError, match="--batch must be >= 1"):
        check_options(VideoOptions(batch=0))
    with pytest.raises(RepsrError, match="--pix-fmt rgb24: h264 does not take it"):
        check_options(VideoOptions(codec="h264", pix_fmt="rgb24"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    model = Upscaler(MODEL, "cpu")
    with pytest.raises(RepsrError, match="bad.mp4: not a readable video"):
        upscale_video(bad, tmp_path / "o.mp4", model)
    assert not (tmp_path / "o.mp4").exists()


def test_without_pyav_the_error_says_how_to_install(clip, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails
    assert main(["upscale", str(clip), "-o", str(tmp_path), "--model", MODEL]) == 1
    assert "video needs PyAV: pip install 'repsr[video]'" in capsys.readouterr().err


def test_ten_bit_input_stays_ten_bit_with_h265(tmp_path):
    clip = tmp_path / "deep.mkv"
    make_clip(clip, frames=3, audio=None, vcodec="libx265", pix_fmt="yuv420p10le",
              options={"x265-params": "log-level=error", "preset": "ultrafast"})
    model = Upscaler(MODEL, "cpu")
    result = upscale_video(clip, tmp_path / "deep_x2.mkv", model, VideoOptions(codec="h265", preset="ultrafast"))
    with av.open(str(result.output)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    assert not result.notes
    eight = upscale_video(clip, tmp_path / "deep8_x2.mkv", model)  # H.264 by default: 8 bits, and a note
    assert any("10-bit samples; h264 writes 8" in n for n in eight.notes)
    frames, _, _ = decode(result.output, colorspace=None, color_range=None)
    assert len(frames) == 3 and frames[0].shape == (96, 128, 3)


def test_sigterm_ends_the_run_like_ctrl_c(tmp_path):
    """A kill (SIGTERM) removes the output in progress, temporary file included, and exits 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    clip = tmp_path / "long.mp4"
    make_clip(clip, frames=900, audio=None)
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "repsr.cli", "upscale", str(clip), "-o", str(out), "--model", MODEL],
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".long_x2.mp4.*")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "finished before it could be stopped"
    os.kill(run.pid, signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "interrupted" in err
    assert list(out.iterdir()) == []
