"""Writing files so that an interruption never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def safe_torch_load(path: Path, what: str) -> object:
    """``torch.load`` with ``weights_only=True``: a file that would run code is refused, never executed."""
    import torch

    if not path.is_file():
        raise RepsrError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling fails with many exception types; all mean "not a safe file"
        text = str(e).strip()
        reason = text.splitlines()[0] if text else type(e).__name__
        raise RepsrError(f"{path}: not a loadable {what} ({reason[:200]})") from None
