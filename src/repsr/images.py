"""Reading and writing images: OpenCV decodes (it keeps 16-bit, alpha and grayscale), Pillow reads the
header first (size limit, EXIF orientation, mode), RGB order, atomic writes."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .errors import RepsrError
from .fileio import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 1 << 28  # 268 M pixels (16k x 16k); REPSR_MAX_PIXELS overrides
Image.MAX_IMAGE_PIXELS = None  # the limit is ours (max_pixels), checked before decoding


# The white level of each integer image dtype: float pixels are these values scaled to [0, 1] (data,
# training, inference and the CPU runtimes all convert through it).
PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def to_tensor(img: np.ndarray) -> Tensor:
    """uint8/uint16 HxW(xC) -> float32 CxHxW in [0, 1]."""
    arr = img[:, :, None] if img.ndim == 2 else img
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float() / PEAKS.get(img.dtype, 255.0)


def max_pixels() -> int:
    try:
        return int(os.environ.get("REPSR_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        raise RepsrError(f"REPSR_MAX_PIXELS must be an integer, got {os.environ['REPSR_MAX_PIXELS']!r}") from None


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so the image is upright."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](img)) if orientation in ops else img


def _exif_orientation(probe: Image.Image) -> int:
    # PNG keeps EXIF in a chunk that getexif() may only find by decoding the pixels: read it from info
    exif = Image.Exif()
    if probe.format == "PNG":
        if probe.info.get("exif"):
            exif.load(probe.info["exif"])
    else:
        exif = probe.getexif()
    return int(exif.get(0x0112, 1))


def read_image(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """Decode an image as uint8/uint16: HxW (gray), HxWx2 (gray+alpha), HxWx3 (RGB) or HxWx4 (RGBA).

    EXIF orientation is applied. Images over ``limit`` pixels (default :func:`max_pixels`) are
    refused before decoding, so a tiny file cannot claim gigabytes of memory.
    """
    path = Path(path)
    try:
        data = path.read_bytes()  # bytes + imdecode: works for any path, non-ASCII included
    except IsADirectoryError:
        raise RepsrError(f"{path}: is a folder, not an image") from None
    except OSError as e:
        raise RepsrError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise RepsrError(f"{path}: empty file")
    unreadable = f"{path}: not a readable image (corrupt, truncated or unsupported format)"
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as probe:  # header only, no pixels
            warnings.simplefilter("ignore")
            width, height = probe.size
            mode = probe.mode
            limit = max_pixels() if limit is None else limit
            if width * height > limit:
                raise RepsrError(f"{path}: {width}x{height} is over the limit of {limit:,} pixels "
                                 "(set REPSR_MAX_PIXELS to allow larger images)")
            orientation = _exif_orientation(probe)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise RepsrError(unreadable) from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise RepsrError(unreadable)
    if img.dtype not in (np.uint8, np.uint16):
        raise RepsrError(f"{path}: unsupported sample type {img.dtype} (expected 8 or 16 bit)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    elif img.ndim != 2:
        raise RepsrError(f"{path}: unsupported channel layout {img.shape}")
    if mode in ("LA", "La") and img.ndim == 3 and img.shape[2] == 4:
        img = np.ascontiguousarray(img[:, :, [0, 3]])  # gray + alpha stays gray + alpha
    return _orient(img, orientation)


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Gray -> RGB by repetition; alpha dropped; RGB unchanged."""
    if img.ndim == 3 and img.shape[2] in (2, 4):
        img = img[:, :, :-1]
    if img.ndim == 2 or img.shape[2] == 1:
        return np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    return img


def write_image(path: str | os.PathLike, img: np.ndarray, software: str | None = None) -> Path:
    """Encode ``img`` (gray, RGB or RGBA; uint8 or uint16) by the path's extension, atomically.

    ``software`` is recorded in PNG (a ``Software`` text chunk) and JPEG (a comment) files, which is
    how ``repsr upscale`` recognizes its own earlier outputs (:func:`software_tag`).
    """
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise RepsrError(f"{path}: unsupported output format {path.suffix!r}")
    suffix = path.suffix.lower()
    if img.ndim == 3 and img.shape[2] == 2 and img.dtype == np.uint8 and suffix in (".png", ".webp", ".tif", ".tiff"):
        encoded = _pillow_encode(img, suffix)  # OpenCV cannot write gray + alpha
    else:
        bgr = img
        if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha where only BGRA can be written
            bgr = cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2BGRA)
            bgr[:, :, 3] = img[:, :, 1]
        elif img.ndim == 3 and img.shape[2] == 3:
            bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        elif img.ndim == 3 and img.shape[2] == 4:
            bgr = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
        ok, encoded = cv2.imencode(suffix, bgr)
        if not ok:
            raise RepsrError(f"{path}: could not encode the image")
    if software:
        encoded = _with_software(bytes(encoded), software)
    try:
        with atomic_write(path) as tmp:
            tmp.write_bytes(bytes(encoded))
    except OSError as e:
        raise RepsrError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def _pillow_encode(img: np.ndarray, suffix: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(img, "LA").save(buffer, {".png": "PNG", ".webp": "WEBP"}.get(suffix, "TIFF"))
    return buffer.getvalue()


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _with_software(data: bytes, software: str) -> bytes:
    """PNG: a ``Software`` tEXt chunk after IHDR; JPEG: a comment after the JFIF header. Others unchanged."""
    text = software.encode("latin-1", "replace")
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR":
        body = b"tEXt" + b"Software\0" + text
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        return data[:33] + chunk + data[33:]
    if data.startswith(b"\xff\xd8"):
        at = 2
        if data[2:4] == b"\xff\xe0":  # JFIF's APP0 must stay first
            at = 4 + struct.unpack(">H", data[4:6])[0]
        comment = text[:65000]
        return data[:at] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[at:]
    return data


def software_tag(path: str | os.PathLike) -> str | None:
    """The ``software`` that :func:`write_image` recorded in a PNG or JPEG file (read from its first 4 KiB)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head.startswith(_PNG_SIGNATURE):
        at = 8
        while at + 8 <= len(head):
            length, kind = struct.unpack(">I4s", head[at : at + 8])
            if kind == b"tEXt" and head[at + 8 : at + 17] == b"Software\0":
                return head[at + 17 : at + 8 + length].decode("latin-1")
            if kind == b"IDAT":
                break
            at += 12 + length
        return None
    if head.startswith(b"\xff\xd8"):
        at = 2
        while at + 4 <= len(head) and head[at] == 0xFF:
            marker, length = head[at + 1], struct.unpack(">H", head[at + 2 : at + 4])[0]
            if marker == 0xFE:
                return head[at + 4 : at + 2 + length].decode("latin-1")
            if marker == 0xDA:  # start of scan: the header is over
                break
            at += 2 + length
    return None
