"""Atomic writes: readers (and a later resume) see the old file or the new one, never half of one.

Each writer goes through a temp file in the target's folder, then ``os.replace``. The file gets the
mode an ordinary ``open()`` would give it (``0o666`` minus the umask), not the ``0o600`` of a temp file.
"""
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict

import torch


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    _atomic(path, write)


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8 text through :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_npz(path: Path, arrays: Dict[str, Any]) -> None:
    """``numpy.savez`` of ``arrays`` (name -> array) to ``path`` atomically, streamed to the file."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: savez would append ".npz" to a temp name
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
    _atomic(path, write)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temp file in the same folder, then ``os.replace``."""
    _atomic(path, lambda tmp: torch.save(obj, tmp))
