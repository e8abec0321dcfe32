"""Run folders, atomic writes and checkpoint lookup shared by every entry point.

A run folder is ``<out_dir>/<name>/<YYYYmmdd-HHMMSS>/`` holding ``config.yaml`` and whatever the
entry point writes. Any path argument may name a checkpoint file, a run folder, or the
``<out_dir>/<name>`` folder above run folders (its newest run is taken).
"""
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import torch
from omegaconf import OmegaConf

log = logging.getLogger(__name__)
CHECKPOINT_TAG = "latentnav"  # key in a checkpoint dict: {"module": registry name, "config": run config}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temp file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_run_dir(out_dir: str, name: str) -> Path:
    """Create ``<out_dir>/<name>/<timestamp>/`` (a suffix keeps two runs in one second apart)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(out_dir) / name
    for i in range(100):
        run_dir = base / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a fresh run folder under {base}")


def save_run_config(cfg: Mapping[str, Any], run_dir: Path) -> Path:
    """Write the resolved config as ``run_dir/config.yaml`` (atomically)."""
    path = Path(run_dir) / "config.yaml"
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(dict(cfg))))
    return path


def latest_run(path: Path) -> Path:
    """``path`` itself if it is a run folder, else its newest sub-folder holding config.yaml."""
    path = Path(path)
    if (path / "config.yaml").is_file():
        return path
    runs = sorted(p for p in path.glob("*") if (p / "config.yaml").is_file())
    if not runs:
        raise FileNotFoundError(f"'{path}' is neither a run folder (with config.yaml) nor a folder of runs")
    return runs[-1]


def resolve_checkpoint(path: str, prefer: str = "best") -> Path:
    """A Lightning checkpoint file from a file path or a run folder (``best.ckpt``, else ``last.ckpt``)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist (expected a .ckpt file or a run folder)")
    run = latest_run(p)
    order = ["best.ckpt", "last.ckpt"] if prefer == "best" else ["last.ckpt", "best.ckpt"]
    for name in order:
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise FileNotFoundError(f"run folder '{run}' holds no checkpoints/best.ckpt or checkpoints/last.ckpt")


def checkpoint_kind(ckpt: Mapping[str, Any]) -> Optional[str]:
    """The registry name stored in a checkpoint by :class:`lightning_modules.fit`, if any."""
    return (ckpt.get(CHECKPOINT_TAG) or {}).get("module")


def load_module(path: str, kind: str, map_location: str = "cpu", freeze: bool = True):
    """Load a LightningModule of registry ``kind`` from a checkpoint file or run folder.

    Raises ``ValueError`` when the checkpoint holds another kind of module, and
    ``FileNotFoundError``/``ValueError`` for a missing or unreadable file.
    """
    from lightning_modules import get_module_class

    ckpt_path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(ckpt_path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated or not a torch file
        raise ValueError(f"checkpoint '{ckpt_path}' could not be read ({type(err).__name__}: {err})") from None
    stored = checkpoint_kind(ckpt)
    if stored is not None and stored != kind:
        raise ValueError(f"checkpoint '{ckpt_path}' holds a '{stored}' module, expected '{kind}'")
    cls = get_module_class(kind)
    try:
        module = cls.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=True)
    except (RuntimeError, TypeError, KeyError) as err:
        raise ValueError(f"checkpoint '{ckpt_path}' does not fit a '{kind}' module ({err})") from None
    log.info("loaded %s from %s", kind, ckpt_path)
    if freeze:
        module.eval()
        module.requires_grad_(False)
    return module


def run_info(run_dir: Path) -> Dict[str, Any]:
    """The resolved config stored in a run folder."""
    return OmegaConf.to_container(OmegaConf.load(latest_run(run_dir) / "config.yaml"), resolve=True)


def run_cli(job: Callable[[], Path]) -> int:
    """Run an entry point's ``job``; bad input becomes one ``error: ...`` line on stderr and exit code 2.

    On success the run/result folder is printed (the CLI's only stdout) and 0 returned. Only
    input errors are caught: a bug still shows its traceback.
    """
    import signal
    import sys

    from configs import ConfigError

    # SIGTERM (e.g. `kill`, a job scheduler) becomes SystemExit, so the cleanup of half-written
    # run/result folders in the entry points runs; SIGKILL cannot be caught (atomic writes cover it).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        out = job()
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(out)
    return 0
