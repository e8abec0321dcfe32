"""Run folders and how path arguments resolve.

A run folder is ``<out_dir>/<name>/<YYYYmmdd-HHMMSS>/`` holding ``config.yaml`` and whatever the
entry point writes. Any path argument may name a checkpoint file, a run folder, or the
``<out_dir>/<name>`` folder above run folders (its newest run is taken).
"""
import time
from pathlib import Path
from typing import Any, Dict, Mapping

from omegaconf import OmegaConf

from utils.errors import MissingFileError
from utils.io import atomic_write_text

RUN_CONFIG = "config.yaml"


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
    path = Path(run_dir) / RUN_CONFIG
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(dict(cfg))))
    return path


def latest_run(path: Path) -> Path:
    """``path`` itself if it is a run folder, else its newest sub-folder holding config.yaml."""
    path = Path(path)
    if (path / RUN_CONFIG).is_file():
        return path
    runs = sorted(p for p in path.glob("*") if (p / RUN_CONFIG).is_file())
    if not runs:
        raise MissingFileError(f"'{path}' is neither a run folder (with {RUN_CONFIG}) nor a folder of runs")
    return runs[-1]


def run_info(run_dir: Path) -> Dict[str, Any]:
    """The resolved config stored in a run folder."""
    return OmegaConf.to_container(OmegaConf.load(latest_run(run_dir) / RUN_CONFIG), resolve=True)


def resolve_checkpoint(path: str, prefer: str = "best") -> Path:
    """A Lightning checkpoint file from a file path or a run folder (``best.ckpt``, else ``last.ckpt``)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise MissingFileError(f"checkpoint '{path}' does not exist (expected a .ckpt file or a run folder)")
    run = latest_run(p)
    order = ["best.ckpt", "last.ckpt"] if prefer == "best" else ["last.ckpt", "best.ckpt"]
    for name in order:
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise MissingFileError(f"run folder '{run}' holds no checkpoints/best.ckpt or checkpoints/last.ckpt")
