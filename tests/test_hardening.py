"""Bad and unusual images through `repsr upscale`, `repsr eval` and the training loaders."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from repsr import RepSRNet, reparameterize_model
from repsr.cli import main
from repsr.data import HRFolder
from repsr.errors import RepsrError
from repsr.export import save_deploy
from repsr.images import read_image, write_image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but that holds almost nothing: a decompression bomb's shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def pil_bytes(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Good and bad files side by side; returns (folder, good names -> expected output shape, bad names)."""
    folder = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    png = pil_bytes(Image.fromarray(rgb), "PNG")
    jpg = pil_bytes(Image.fromarray(rgb), "JPEG", quality=90)
    files = {
        "empty.png": b"",
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 2],
        "text.png": b"just some text, not pixels",
        "vector.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        "bomb.png": png_header_only(100_000, 100_000),
        "one.png": pil_bytes(Image.fromarray(rgb[:1, :1]), "PNG"),
        "row.png": pil_bytes(Image.fromarray(rgb[:1]), "PNG"),
        "gray_alpha.png": pil_bytes(Image.fromarray(rgb[:, :, :2], "LA"), "PNG"),
        "rgba.png": pil_bytes(Image.fromarray(np.dstack([rgb, rgb[:, :, :1]]), "RGBA"), "PNG"),
        "palette.png": pil_bytes(Image.fromarray(rgb).convert("P"), "PNG"),
        "cmyk.jpg": pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "gray.png": pil_bytes(Image.fromarray(rgb[:, :, 0]), "PNG"),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    files["rotated.jpg"] = pil_bytes(Image.fromarray(rgb), "JPEG", exif=exif.tobytes())
    for name, data in files.items():
        (folder / name).write_bytes(data)
    write_image(folder / "deep.png", rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16))
    good = {"one.png": (2, 2, 3), "row.png": (2, 20, 3), "gray_alpha.png": (24, 20, 2), "rgba.png": (24, 20, 4),
            "palette.png": (24, 20, 3), "cmyk.png": (24, 20, 3), "gray.png": (24, 20), "rotated.png": (20, 24, 3),
            "deep.png": (24, 20, 3)}
    bad = ["empty.png", "truncated.png", "truncated.jpg", "text.png", "vector.svg", "bomb.png"]
    return folder, good, bad


@pytest.fixture(scope="module")
def x2_model(tmp_path_factory):
    model = reparameterize_model(RepSRNet(upscale=2, num_feat=4, num_block=1))
    return save_deploy(model, tmp_path_factory.mktemp("m") / "x2.safetensors")


def test_upscale_sweep(gallery, x2_model, tmp_path, capsys):
    folder, good, bad = gallery
    inputs = [str(folder / n) for n in sorted(p.name for p in folder.iterdir())]
    out = tmp_path / "out"
    assert main(["upscale", *inputs, "-o", str(out), "--model", str(x2_model), "--tile", "64", "--suffix", ""]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    for name in bad:  # one line each, naming the file
        assert sum(str(folder / name) in line for line in err) == 1, name
    assert "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in out.iterdir()) == sorted(good)
    for name, shape in good.items():
        assert read_image(out / name).shape == shape, name
    assert read_image(out / "deep.png").dtype == np.uint16
    assert not list(out.glob(".*"))  # nothing half-written


def test_orientation_and_modes_match_pillow(gallery):
    folder, _, _ = gallery
    upright = np.asarray(ImageOps.exif_transpose(Image.open(folder / "rotated.jpg")))
    np.testing.assert_array_equal(read_image(folder / "rotated.jpg"), upright)
    palette = np.asarray(Image.open(folder / "palette.png").convert("RGB"))
    np.testing.assert_array_equal(read_image(folder / "palette.png"), palette)
    assert read_image(folder / "gray_alpha.png").shape == (12, 10, 2)


def test_pixel_limit_is_configurable(gallery, monkeypatch):
    folder, _, _ = gallery
    with pytest.raises(RepsrError, match="bomb.png: 100000x100000 is over the limit"):
        read_image(folder / "bomb.png")
    monkeypatch.setenv("REPSR_MAX_PIXELS", "50")
    with pytest.raises(RepsrError, match="over the limit of 50 pixels"):
        read_image(folder / "rgba.png")


def test_output_is_an_existing_folder(gallery, x2_model, tmp_path, capsys):
    folder, _, _ = gallery
    out = tmp_path / "o"
    (out / "gray.png").mkdir(parents=True)
    assert main(["upscale", str(folder / "gray.png"), "-o", str(out), "--model", str(x2_model), "--overwrite",
                 "--suffix", ""]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_loaders_name_the_bad_file(gallery, tmp_path, capsys):
    folder, _, _ = gallery
    data = tmp_path / "set"
    data.mkdir()
    (data / "fine.png").write_bytes((folder / "palette.png").read_bytes())
    (data / "zz_truncated.png").write_bytes((folder / "truncated.png").read_bytes())
    ds = HRFolder(data, 2)
    assert ds[0].hr.shape == (12, 10, 3)
    assert main(["eval", "--model", "bicubic", "--data", str(data), "--scale", "2", "--cache-dir", "none"]) == 1
    assert "fine.png: SSIM needs images of at least 11x11" in capsys.readouterr().err  # too small to measure
    write_image(data / "fine.png", np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    ds = HRFolder(data, 2)
    with pytest.raises(RepsrError, match="zz_truncated.png: not a readable image"):
        ds[1]
    assert main(["eval", "--model", "bicubic", "--data", str(data), "--scale", "2", "--cache-dir", "none"]) == 1
    assert "zz_truncated.png: not a readable image" in capsys.readouterr().err
