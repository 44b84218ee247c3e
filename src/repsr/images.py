"""Reading and writing images: OpenCV (keeps 16-bit, alpha and grayscale), RGB order, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import RepsrError
from .fileio import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image as uint8/uint16: HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA)."""
    path = Path(path)
    try:
        data = path.read_bytes()  # bytes + imdecode: works for any path, non-ASCII included
    except IsADirectoryError:
        raise RepsrError(f"{path}: is a folder, not an image") from None
    except OSError as e:
        raise RepsrError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise RepsrError(f"{path}: empty file")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise RepsrError(f"{path}: not a readable image (corrupt, truncated or unsupported format)")
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
    return img


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Gray -> RGB by repetition; RGBA -> RGB by dropping alpha; RGB unchanged."""
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return img[:, :, :3]


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Encode ``img`` (gray, RGB or RGBA; uint8 or uint16) by the path's extension, atomically."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise RepsrError(f"{path}: unsupported output format {path.suffix!r}")
    bgr = img
    if img.ndim == 3 and img.shape[2] == 3:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(path.suffix.lower(), bgr)
    if not ok:
        raise RepsrError(f"{path}: could not encode the image")
    try:
        with atomic_write(path) as tmp:
            tmp.write_bytes(encoded.tobytes())
    except OSError as e:
        raise RepsrError(f"{path}: cannot write ({e.strerror or e})") from None
    return path
