"""Reuse of earlier runs by the benchmarks: a stage is trained only when no finished run has its config."""
import copy
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

# keys (dotted for nested ones) that do not change what a run computes
VOLATILE = ("out_dir", "resume", "train.strip_every")


def _without_volatile(cfg: Dict[str, Any]) -> Dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    for key in VOLATILE:
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return cfg


def matching_run(runs_dir: Path, name: str, cfg: Dict[str, Any]) -> Optional[Path]:
    """The newest finished run under ``runs_dir/name`` whose saved config equals ``cfg`` (up to
    :data:`VOLATILE` keys), else None. Interrupted runs (no closing summary file) never match."""
    want = _without_volatile(cfg)
    for run in sorted((Path(runs_dir) / name).glob("*"), reverse=True):
        path = run / "config.yaml"
        done = (run / "test_metrics.json").is_file() or (run / "train_summary.json").is_file()
        if path.is_file() and done:
            have = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
            if _without_volatile(have) == want:
                return run
    return None
