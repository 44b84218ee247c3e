"""Colour of a video stream: the matrix, range, primaries and transfer the output keeps, and the conversions
between the stream's pixel format and the RGB frames the network sees."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

# AVColorSpace -> the swscale matrix name PyAV takes; unknown or unspecified matrices are guessed by size
_MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
AVCOL_SPC = {"ITU709": 1, "FCC": 4, "ITU601": 5, "SMPTE170M": 6, "SMPTE240M": 7, "BT2020": 9}
RANGE_NAMES = {1: "MPEG", 2: "JPEG"}
_RGB_FORMATS = ("rgb", "bgr", "gbr", "argb", "abgr", "pal8", "gray")


@dataclass(frozen=True)
class Colour:
    matrix: str  # swscale name
    range: int  # AVColorRange: 1 limited (tv), 2 full (pc)
    primaries: int
    trc: int
    rgb_input: bool  # the input frames are RGB or palette (GIF): no matrix of their own

    @classmethod
    def of(cls, frame: Any) -> Colour:
        name = frame.format.name
        rgb = name.startswith(_RGB_FORMATS) or name in ("0rgb", "0bgr")
        matrix = _MATRICES.get(int(frame.colorspace))
        if matrix is None:  # unspecified: what players assume, BT.601 below 720 lines, BT.709 from there
            matrix = "ITU709" if frame.height >= 720 else "ITU601"
        full = name.startswith("yuvj") or int(frame.color_range) == 2
        return cls(matrix, 2 if full and not rgb else 1, int(frame.color_primaries), int(frame.color_trc), rgb)


def frame_bits(frame: Any) -> int:
    return max(c.bits for c in frame.format.components) if frame.format.components else 8


def has_transparency(frame: Any) -> bool:
    if frame.format.name not in ("bgra", "rgba", "argb", "abgr", "pal8"):
        return False
    try:
        return bool((frame.to_ndarray(format="rgba")[:, :, 3] < 255).any())
    except ValueError:  # a format PyAV cannot convert to RGBA: say nothing
        return False


def display_matrix(frame: Any) -> list[int] | None:
    """The rotation a phone records portrait video with (the frame's 3x3 display matrix), if any."""
    for data in frame.side_data:
        if data.type.name == "DISPLAYMATRIX" and len(bytes(data)) == 36:
            return [int(v) for v in np.frombuffer(bytes(data), "<i4")]
    return None


class RgbConverter:
    """Decoded frames to RGB arrays (8 or 16 bits) with the stream's own matrix and range."""

    def __init__(self, colour: Colour, bits: int) -> None:
        from av.video.reformatter import VideoReformatter

        self.colour, self.format = colour, "rgb48le" if bits == 16 else "rgb24"
        self.reformatter = VideoReformatter()

    def __call__(self, frame: Any) -> np.ndarray:
        if self.colour.rgb_input:
            return self.reformatter.reformat(frame, format=self.format).to_ndarray()
        return self.reformatter.reformat(frame, format=self.format, src_colorspace=self.colour.matrix,
                                         src_color_range=RANGE_NAMES[self.colour.range]).to_ndarray()


class FrameEncoder:
    """Upscaled RGB arrays to frames in the output's pixel format, matrix and range (a palette per frame for GIF)."""

    def __init__(self, av: Any, colour: Colour, pix_fmt: str, bits: int) -> None:
        from av.video.reformatter import VideoReformatter

        self.av, self.colour, self.pix_fmt = av, colour, pix_fmt
        self.rgb_format = "rgb48le" if bits == 16 else "rgb24"
        self.reformatter = VideoReformatter()

    def __call__(self, array: np.ndarray) -> Any:
        if self.pix_fmt == "pal8":
            return palette_frame(self.av, array if array.dtype == np.uint8 else (array >> 8).astype(np.uint8))
        frame = None
        if self.pix_fmt != self.rgb_format:  # a view of the array (no copy): the reformat makes the encoder's frame
            with contextlib.suppress(ValueError, TypeError):
                frame = self.av.VideoFrame.from_numpy_buffer(array, format=self.rgb_format)
        if frame is None:
            frame = self.av.VideoFrame.from_ndarray(array, format=self.rgb_format)
        if self.pix_fmt.startswith(("gbr", "rgb", "bgr")):
            return self.reformatter.reformat(frame, format=self.pix_fmt)
        return self.reformatter.reformat(frame, format=self.pix_fmt, dst_colorspace=self.colour.matrix,
                                         dst_color_range=RANGE_NAMES[self.colour.range])


def palette_frame(av: Any, rgb: np.ndarray) -> Any:
    """An RGB frame as a 256-colour palette frame for GIF (each frame gets its own palette)."""
    from PIL import Image

    image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE)
    palette = np.asarray(image.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
    argb = np.zeros((256, 4), np.uint8)
    argb[:, 0] = 255
    argb[: len(palette), 1:] = palette
    return av.VideoFrame.from_ndarray((np.asarray(image), argb), format="pal8")
