"""Writing files so that an interruption never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from .errors import RepsrError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``.

    The rename is atomic on POSIX and Windows, so ``path`` is always either the previous complete
    file or the new complete file. On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 (and some writers recreate the file): give it the usual permissions
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def make_output_folder(folder: Path) -> None:
    """Create ``folder`` (and parents) for outputs, or say in one line why it cannot hold them."""
    if folder.exists() and not folder.is_dir():
        raise RepsrError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RepsrError(f"{folder}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK):
        raise RepsrError(f"{folder}: folder is not writable")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_PICKLE_START = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def describe_foreign(head: bytes, path: Path) -> str | None:
    """What a file that cannot be a model looks like, from its first bytes (None: it might be one)."""
    if not head:
        return "it is empty"
    stripped = head.lstrip()
    if head.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the file itself (fetch it with: git lfs pull)"
    if stripped[:15].lower().startswith((b"<!doctype html", b"<html", b"<head", b"<!--")):
        return "it is a web page (HTML), not a model: a download that saved the page instead of the file?"
    images = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF",
              b"MM\x00*": "TIFF"}
    for magic, kind in images.items():
        if head.startswith(magic):
            return f"it is a {kind} image, not a model"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "it is a WebP image, not a model"
    if path.suffix.lower() == ".onnx":
        return "it is an ONNX file; repsr reads .safetensors and PyTorch .pth files (repsr export writes ONNX)"
    if head.startswith(b"7767517"):
        return "it is an ncnn .param file; repsr reads .safetensors and PyTorch .pth files"
    if path.suffix.lower() == ".bin" and not head.startswith((b"PK\x03\x04", *_PICKLE_START)):
        return "it is a raw weight file (ncnn .bin?); repsr reads .safetensors and PyTorch .pth files"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text[:-4]):
        return "it is a text file, not a model"
    return None


def head_bytes(path: Path, size: int = 512) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except IsADirectoryError:
        raise RepsrError(f"{path}: is a folder, not a file") from None
    except OSError as e:
        raise RepsrError(f"{path}: cannot read ({e.strerror or e})") from None


def safe_torch_load(path: Path, what: str) -> object:
    """``torch.load`` with ``weights_only=True``: a file that would run code is refused, never executed.

    Errors are one line saying what the file is (text, an image, a web page, a plain pickle, a
    damaged archive); torch's own advice to retry with ``weights_only=False`` is never passed on.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise RepsrError(f"{path}: no such file")
    head = head_bytes(path)
    foreign = describe_foreign(head, path)
    if foreign is not None:
        raise RepsrError(f"{path}: not a loadable {what}: {foreign}")
    if not head.startswith((b"PK\x03\x04", *_PICKLE_START)):
        raise RepsrError(f"{path}: not a loadable {what}: not a PyTorch or safetensors file (unknown format)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling fails with many exception types; all mean "not a safe file"
        raise RepsrError(f"{path}: not a loadable {what}: {_torch_load_reason(str(e), head)}") from None


def _torch_load_reason(text: str, head: bytes) -> str:
    """torch.load's error as one plain line, without its advice to turn the safety check off."""
    unsafe = "it holds Python objects besides tensors, which repsr does not load (loading them could run code)"
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if match:
        return f"it holds a Python object ({match.group(1)}) besides tensors, which repsr does not load " \
               "(loading it could run code)"
    if "weights_only" in text or "WeightsUnpickler" in text or "Weights only" in text:
        if head.startswith(b"PK\x03\x04"):
            return unsafe
        return "it is a plain pickle, not a PyTorch tensor file; refused unread (loading it could run code)"
    if head.startswith(b"PK\x03\x04"):
        if "central directory" in text or "truncated" in text.lower():
            return "the PyTorch archive is damaged or truncated"
        return "a zip archive that is not a PyTorch file, or a damaged one"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"damaged or not a PyTorch file ({first[:150]})" if first else "damaged or not a PyTorch file"
