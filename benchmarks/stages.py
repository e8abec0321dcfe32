"""Reuse of earlier runs by the benchmarks: a stage is trained only when no finished run has its config.

A stage's config is its experiment YAML plus ``values`` the benchmark sets in code (a dict of dotted
keys: upstream checkpoints, the task set, the seed) plus the user's ``overrides.<stage>`` strings.
:func:`stage_run` returns a :class:`Stage`: the run folder and, when it was trained here, its wall time.

Only *finished* runs (:func:`utils.runs.finished`) are reused. An ``rl.train`` stage whose newest run with
the same config was interrupted (it has a ``train_state.pt``) is resumed from that state instead of
trained again; an interrupted ``fit`` stage is named in a warning and trained afresh.
"""
import copy
import dataclasses
import logging
import time
from pathlib import Path
from concurrent.futures import Future
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from configs import load_config
from configs.loader import with_section_defaults
from configs.schema import RLConfig, saved_config_defaults
from lightning_modules import fit as fit_cli
from rl import train as rl_cli
from rl.loop import TRAIN_STATE_FILE
from utils.cli import setup_logging
from utils.errors import MissingFileError, UserError
from utils.runs import finished, finished_run, is_run, run_info

log = logging.getLogger(__name__)

# keys (dotted for nested ones) that do not change what a run computes (num_threads: how many cores compute it)
VOLATILE = ("out_dir", "resume", "train.strip_every", "calibrated", "num_threads")


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
    # a saved run's calibrated values (listed in its `calibrated`) match a request that asked for 'auto';
    # keys added after a run was saved (trainer keys; rl.train's top-level ones such as `device`; keys of the
    # env, agent, module and data sections such as env.mdp.identity_cost) count as their defaults
    cfg = saved_config_defaults(cfg)
    rl = isinstance(cfg.get("agent"), dict) or isinstance(cfg.get("env"), dict)
    cfg = copy.deepcopy(with_section_defaults(cfg, rl_cli.SECTIONS if rl else fit_cli.SECTIONS))
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


def _same_config_runs(runs_dir: Path, name: str, cfg: Dict[str, Any]):
    # run folders under runs_dir/name whose saved config equals cfg (up to VOLATILE keys), newest first
    want = _comparable(cfg)
    for run in sorted((Path(runs_dir) / name).glob("*"), reverse=True):
        if is_run(run) and _comparable(run_info(run), cfg) == want:
            yield run


def matching_run(runs_dir: Path, name: str, cfg: Dict[str, Any]) -> Optional[Path]:
    """The newest finished run under ``runs_dir/name`` whose saved config equals ``cfg`` (up to
    :data:`VOLATILE` keys, and calibrated values where ``cfg`` asks for 'auto'), else None.
    Interrupted runs (no closing summary file) never match."""
    return next((run for run in _same_config_runs(runs_dir, name, cfg) if finished(run)), None)


def interrupted_run(runs_dir: Path, name: str, cfg: Dict[str, Any]) -> Optional[Path]:
    """The newest unfinished run with ``cfg``'s config that has a training state to resume from, else None."""
    return next((run for run in _same_config_runs(runs_dir, name, cfg)
                 if not finished(run) and (run / TRAIN_STATE_FILE).is_file()), None)


def given_run(given: str, key: str) -> Path:
    """The run (or file) a stage set to a path names: a file as it is, a run folder if it finished, a
    folder of runs its newest finished one (:func:`utils.runs.finished_run`)."""
    path = Path(given)
    if path.is_file():
        return path
    if not path.exists():
        raise MissingFileError(f"{key}='{given}' does not exist: expected 'auto', a run folder, a folder of runs "
                               "(its newest finished run) or a checkpoint file")
    try:
        return finished_run(path)
    except UserError as err:
        raise type(err)(f"{key}: {err}") from None


def check_stages(bench: Dict[str, Any], configs: Mapping[str, Tuple[str, bool]]) -> None:
    """Before anything trains: every stage given as a path resolves, and the config of every 'auto' stage
    (``configs``: stage -> (experiment YAML, is an rl.train config)) loads with its overrides."""
    check_overrides(bench)
    for stage, (config, rl) in configs.items():
        given = bench["stages"][stage]
        entries = given if isinstance(given, list) else [given]
        for entry in entries:
            if entry != "auto":
                given_run(entry, f"stages.{stage}")
        if "auto" in entries:
            try:
                stage_config(bench, stage, config, {}, rl)
            except UserError as err:
                raise type(err)(f"stage {stage} ({config}): {err}") from None


def check_overrides(bench: Dict[str, Any]) -> None:
    """Every key of ``overrides`` (and ``tuned``) must name a stage (a key of ``stages``), before anything trains."""
    for section in ("tuned", "overrides"):
        unknown = sorted(set(bench.get(section) or {}) - set(bench["stages"]))
        if unknown:
            raise UserError(f"{section}.{unknown[0]}: no such stage; expected one of {sorted(bench['stages'])}")


def stage_config(bench: Dict[str, Any], stage: str, config: str, values: Mapping[str, Any], rl: bool) -> Dict[str, Any]:
    """The resolved config of ``stage``: the YAML ``config``, then ``values``, then ``tuned.<stage>`` (where the
    benchmark has that key), then ``overrides.<stage>``."""
    values = {"out_dir": str(bench["runs_dir"]), **values}
    overrides = [*(bench.get("tuned") or {}).get(stage, []), *bench["overrides"].get(stage, [])]
    if rl:
        return load_config(config, overrides, schema=RLConfig, sections=rl_cli.SECTIONS, values=values)
    return load_config(config, overrides, sections=fit_cli.SECTIONS, values=values)


def resolve_stage(bench: Dict[str, Any], stage: str, config: str, values: Mapping[str, Any], rl: bool,
                  given: Optional[str] = None) -> Tuple[Optional[Path], Optional[Dict[str, Any]]]:
    """``(run folder, None)`` when the stage is given or an earlier run matches, else ``(None, config)``.
    ``given`` replaces ``bench['stages'][stage]`` (for stages with one entry per seed)."""
    given = bench["stages"][stage] if given is None else given
    if given != "auto":
        return given_run(given, f"stages.{stage}"), None
    cfg = stage_config(bench, stage, config, values, rl)
    runs_dir = Path(bench["runs_dir"])
    found = matching_run(runs_dir, cfg["name"], cfg)
    if found is not None:
        log.warning("stage %s: reusing %s (same config)", stage, found)
        return found, None
    stopped = interrupted_run(runs_dir, cfg["name"], cfg) if rl else None
    if stopped is not None:
        log.warning("stage %s: resuming the interrupted run %s (same config) from its %s", stage, stopped,
                    TRAIN_STATE_FILE)
        return None, {**run_info(stopped), "resume": str(stopped)}
    unfinished = [str(run) for run in _same_config_runs(runs_dir, cfg["name"], cfg)]
    if unfinished:
        log.warning("stage %s: not using the unfinished run(s) %s with this config (interrupted before a state "
                    "to resume from was saved, or still running)", stage, unfinished)
    return None, cfg


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
    return stage_job(bench, None, stage, config, values, rl=rl, given=given)()


def trained(submit: Optional[Callable[..., Future]], kind: str, cfg: Dict[str, Any], rl: bool) -> Callable[[], Stage]:
    """Train the stage ``cfg`` describes: here and now (``submit`` None), or as a ``kind`` job of a launcher
    (``submit`` of :func:`benchmarks.launchers.job_pool`). Returns a function that waits for its :class:`Stage`."""
    if submit is None:
        stage = Stage(*train_stage(cfg, rl=rl))
        return lambda: stage
    future = submit(kind, train_stage, cfg, rl)
    return lambda: Stage(*future.result())


def stage_job(bench: Dict[str, Any], submit: Optional[Callable[..., Future]], stage: str, config: str,
              values: Mapping[str, Any], rl: bool = False, given: Optional[str] = None) -> Callable[[], Stage]:
    """:func:`stage_run` on a launcher: a given or matching run needs no job; a stage to train is a job of kind
    ``stage`` (see :func:`trained`). Returns a function that waits for the :class:`Stage`."""
    run, cfg = resolve_stage(bench, stage, config, values, rl=rl, given=given)
    if run is not None:
        return lambda: Stage(run)
    log.warning("stage %s: training (%s%s)", stage, config, "" if submit is None else ", as a job")
    return trained(submit, stage, cfg, rl)
