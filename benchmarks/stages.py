"""Reuse of earlier runs by the benchmarks: a stage is trained only when no finished run has its config
(``stage_run``; ``matching_run`` finds the run, ``train_stage`` trains one, also in worker processes)."""
import copy
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import OmegaConf

from configs import load_config
from configs.schema import RLConfig
from lightning_modules import fit as fit_cli
from rl import train as rl_cli

log = logging.getLogger(__name__)

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


def resolve_stage(bench: Dict[str, Any], stage: str, config: str, overrides: List[str], rl: bool):
    """``(run folder, None)`` when the stage is given or an earlier run matches, else ``(None, config)``."""
    given = bench["stages"][stage]
    if given != "auto":
        return Path(given), None
    runs_dir = Path(bench["runs_dir"])
    overrides = [f"out_dir={runs_dir}", *overrides, *bench["overrides"][stage]]
    if rl:
        cfg = load_config(config, overrides, schema=RLConfig, sections=rl_cli.SECTIONS)
    else:
        cfg = load_config(config, overrides, sections=fit_cli.SECTIONS)
    found = matching_run(runs_dir, cfg["name"], cfg)
    if found is not None:
        log.warning("stage %s: reusing %s (same config)", stage, found)
    return found, (None if found is not None else cfg)


def train_stage(cfg: Dict[str, Any], rl: bool) -> Tuple[Path, float]:
    """Train one stage; (run folder, wall seconds). Module level: agents run it in worker processes."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.time()
    run = rl_cli.train_agent(cfg) if rl else fit_cli.fit(cfg)
    return Path(run), round(time.time() - start, 1)


def stage_run(bench: Dict[str, Any], stage: str, config: str, overrides: List[str], rl: bool = False) -> Path:
    """A run folder for ``stage``: the configured one, a matching earlier run, or a fresh training
    (its wall time recorded in ``bench["_wall"][stage]``); ``rl``: an ``rl.train`` config, else ``fit``."""
    run, cfg = resolve_stage(bench, stage, config, overrides, rl=rl)
    if run is None:
        log.warning("stage %s: training (%s)", stage, config)
        run, bench.setdefault("_wall", {})[stage] = train_stage(cfg, rl=rl)
    return run
