"""Reuse of earlier runs by the benchmarks: a stage is trained only when no finished run has its config.

A stage's config is its experiment YAML plus ``values`` the benchmark sets in code (a dict of dotted
keys: upstream checkpoints, the task set, the seed) plus the user's ``overrides.<stage>`` strings.
:func:`stage_run` returns a :class:`Stage`: the run folder and, when it was trained here, its wall time.
"""
import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from omegaconf import OmegaConf

from configs import load_config
from configs.schema import RLConfig
from lightning_modules import fit as fit_cli
from rl import train as rl_cli
from utils.cli import setup_logging
from utils.errors import UserError

log = logging.getLogger(__name__)

# keys (dotted for nested ones) that do not change what a run computes
VOLATILE = ("out_dir", "resume", "train.strip_every", "calibrated")


@dataclasses.dataclass
class Stage:
    """A stage's run folder; ``wall_s`` is the training time when this benchmark trained it (else None)."""

    run: Path
    wall_s: Optional[float] = None


def _pop(cfg: Dict[str, Any], key: str) -> Any:
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return node.pop(leaf, None) if isinstance(node, dict) else None


def _comparable(cfg: Dict[str, Any], wanted: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    # a saved run's calibrated values (listed in its `calibrated`) match a request that asked for 'auto'
    cfg = copy.deepcopy(cfg)
    for key in cfg.get("calibrated") or []:
        want = _get(wanted, key) if wanted is not None else None
        if want == "auto":
            _set(cfg, key, "auto")
    for key in VOLATILE:
        _pop(cfg, key)
    return cfg


def _get(cfg: Optional[Dict[str, Any]], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _set(cfg: Dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = value


def matching_run(runs_dir: Path, name: str, cfg: Dict[str, Any]) -> Optional[Path]:
    """The newest finished run under ``runs_dir/name`` whose saved config equals ``cfg`` (up to
    :data:`VOLATILE` keys, and calibrated values where ``cfg`` asks for 'auto'), else None.
    Interrupted runs (no closing summary file) never match."""
    want = _comparable(cfg)
    for run in sorted((Path(runs_dir) / name).glob("*"), reverse=True):
        path = run / "config.yaml"
        done = (run / "test_metrics.json").is_file() or (run / "train_summary.json").is_file()
        if path.is_file() and done:
            have = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
            if _comparable(have, cfg) == want:
                return run
    return None


def check_overrides(bench: Dict[str, Any]) -> None:
    """Every key of ``overrides`` must name a stage (a key of ``stages``), before anything trains."""
    unknown = sorted(set(bench["overrides"]) - set(bench["stages"]))
    if unknown:
        raise UserError(f"overrides.{unknown[0]}: no such stage; expected one of {sorted(bench['stages'])}")


def stage_config(bench: Dict[str, Any], stage: str, config: str, values: Mapping[str, Any], rl: bool) -> Dict[str, Any]:
    """The resolved config of ``stage``: the YAML ``config``, then ``values``, then ``overrides.<stage>``."""
    values, overrides = {"out_dir": str(bench["runs_dir"]), **values}, bench["overrides"].get(stage, [])
    if rl:
        return load_config(config, overrides, schema=RLConfig, sections=rl_cli.SECTIONS, values=values)
    return load_config(config, overrides, sections=fit_cli.SECTIONS, values=values)


def resolve_stage(bench: Dict[str, Any], stage: str, config: str, values: Mapping[str, Any], rl: bool,
                  given: Optional[str] = None) -> Tuple[Optional[Path], Optional[Dict[str, Any]]]:
    """``(run folder, None)`` when the stage is given or an earlier run matches, else ``(None, config)``.
    ``given`` replaces ``bench['stages'][stage]`` (for stages with one entry per seed)."""
    given = bench["stages"][stage] if given is None else given
    if given != "auto":
        return Path(given), None
    cfg = stage_config(bench, stage, config, values, rl)
    found = matching_run(Path(bench["runs_dir"]), cfg["name"], cfg)
    if found is not None:
        log.warning("stage %s: reusing %s (same config)", stage, found)
    return found, (None if found is not None else cfg)


def train_stage(cfg: Dict[str, Any], rl: bool) -> Tuple[Path, float]:
    """Train one stage; (run folder, wall seconds). Module level: agents run it in worker processes."""
    setup_logging()
    start = time.time()
    run = rl_cli.train_agent(cfg) if rl else fit_cli.fit(cfg)
    return Path(run), round(time.time() - start, 1)


def stage_run(bench: Dict[str, Any], stage: str, config: str, values: Mapping[str, Any], rl: bool = False,
              given: Optional[str] = None) -> Stage:
    """A :class:`Stage` for ``stage``: the configured run, a matching earlier run, or a fresh training
    (``rl``: an ``rl.train`` config, else a ``lightning_modules.fit`` one)."""
    run, cfg = resolve_stage(bench, stage, config, values, rl=rl, given=given)
    if run is not None:
        return Stage(run)
    log.warning("stage %s: training (%s)", stage, config)
    return Stage(*train_stage(cfg, rl=rl))
