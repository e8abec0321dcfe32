"""Run folders, their completion marks, and how path arguments resolve.

A run folder is ``<out_dir>/<name>/<YYYYmmdd-HHMMSS>/`` holding ``config.yaml`` and whatever the
entry point writes. It is **finished** once its closing file exists (:data:`FINISHED_FILES`:
``test_metrics.json`` of ``lightning_modules.fit``, ``train_summary.json`` of ``rl.train``), which
the entry point writes atomically and last; a folder without one was interrupted (or is still running).

Path arguments that name an *input* (a checkpoint, a stage of a benchmark) resolve with
:func:`finished_run`: a run folder must be finished, and the ``<out_dir>/<name>`` folder above run
folders gives its newest *finished* run (newer unfinished ones are named in a warning). ``resume=``
resolves with :func:`latest_run` instead: resuming an unfinished run is its purpose.
"""
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping

from omegaconf import OmegaConf

from utils.errors import MissingFileError, UserError
from utils.io import atomic_write_text

log = logging.getLogger(__name__)
RUN_CONFIG = "config.yaml"
FINISHED_FILES = ("test_metrics.json", "train_summary.json")


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
            if not base.is_dir():
                raise UserError(f"cannot create a run folder under '{base}': '{base}' is not a folder") from None
            continue
        except OSError as err:  # read-only, a file in the way, no space: the user's folder, not a bug
            raise UserError(f"cannot create the run folder '{run_dir}': {err.strerror or err}") from None
    raise RuntimeError(f"could not create a fresh run folder under {base}")


def _writable(folder: Path) -> bool:
    # the mode bits count too: root may write into a folder its owner made read-only, we don't
    return os.access(folder, os.W_OK | os.X_OK) and bool(folder.stat().st_mode & 0o222)


def check_output_dir(path: Any, key: str, value: Any = None) -> None:
    """Fail now, with one line naming ``key`` and its ``value`` (default ``path``), when folder ``path``
    could not be created or written to (a file in the way, a read-only folder); writes nothing."""
    target, path = Path(path), path if value is None else value
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{key}='{path}' cannot be a folder: '{probe}' is a file")
    if not _writable(probe):
        raise UserError(f"{key}='{path}' is not writable: folder '{probe}' is read-only")


def check_output_file(path: Any, key: str) -> None:
    """Like :func:`check_output_dir` for a file to be written: not an existing folder, its folder writable."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{key}='{path}' is a folder, expected a file path")
    if target.exists() and not os.access(target, os.W_OK):
        raise UserError(f"{key}='{path}' exists and is not writable")
    check_output_dir(target.parent, key, value=path)


def save_run_config(cfg: Mapping[str, Any], run_dir: Path) -> Path:
    """Write the resolved config as ``run_dir/config.yaml`` (atomically)."""
    path = Path(run_dir) / RUN_CONFIG
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(dict(cfg))))
    return path


def is_run(path: Path) -> bool:
    """Whether ``path`` is a run folder (holds ``config.yaml``)."""
    return (Path(path) / RUN_CONFIG).is_file()


def finished(run_dir: Path) -> bool:
    """Whether a run folder holds its closing file (one of :data:`FINISHED_FILES`): it ran to its end."""
    return any((Path(run_dir) / name).is_file() for name in FINISHED_FILES)


def runs_in(path: Path) -> List[Path]:
    """The run folders directly under ``path``, oldest first (the names are time stamps)."""
    return sorted(p for p in Path(path).glob("*") if is_run(p))


def latest_run(path: Path) -> Path:
    """``path`` itself if it is a run folder, else its newest run, finished or not (``resume=``)."""
    path = Path(path)
    if is_run(path):
        return path
    runs = runs_in(path)
    if not runs:
        raise MissingFileError(f"'{path}' is neither a run folder (with {RUN_CONFIG}) nor a folder of runs")
    return runs[-1]


def finished_run(path: Path) -> Path:
    """The run an *input* path names: ``path`` itself if it is a finished run folder, else the newest
    finished run under it (logged; newer unfinished runs are named in a warning).

    Raises :class:`UserError` for an unfinished run folder and for a folder holding only unfinished runs,
    :class:`MissingFileError` when ``path`` holds no run at all.
    """
    path = Path(path)
    if is_run(path):
        if not finished(path):
            raise UserError(f"run '{path}' is unfinished (no {' or '.join(FINISHED_FILES)}: interrupted or still "
                            f"running); resume it with resume={path}, or name one of its files to use it as it is")
        return path
    runs = runs_in(path)
    if not runs:
        raise MissingFileError(f"'{path}' is neither a run folder (with {RUN_CONFIG}) nor a folder of runs")
    done = [run for run in runs if finished(run)]
    if not done:
        raise UserError(f"'{path}' holds no finished run: {len(runs)} unfinished (newest '{runs[-1]}', interrupted "
                        f"or still running); resume it with resume={runs[-1]}, or train one")
    newer = [str(run) for run in runs if run.name > done[-1].name]
    if newer:
        log.warning("'%s': skipping %d newer unfinished run(s) %s (interrupted or still running)",
                    path, len(newer), newer)
    log.info("'%s': using its newest finished run %s", path, done[-1])
    return done[-1]


def run_info(run_dir: Path) -> Dict[str, Any]:
    """The resolved config stored in a run folder (or in the newest run of a folder of runs)."""
    return OmegaConf.to_container(OmegaConf.load(latest_run(run_dir) / RUN_CONFIG), resolve=True)


def resolve_checkpoint(path: str, prefer: str = "best") -> Path:
    """A Lightning checkpoint file from a file path or a finished run (``best.ckpt``, else ``last.ckpt``);
    a folder of runs gives its newest finished run (:func:`finished_run`)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise MissingFileError(f"checkpoint '{path}' does not exist (expected a .ckpt file or a run folder)")
    run = finished_run(p)
    order = ["best.ckpt", "last.ckpt"] if prefer == "best" else ["last.ckpt", "best.ckpt"]
    for name in order:
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise MissingFileError(f"run folder '{run}' holds no checkpoints/best.ckpt or checkpoints/last.ckpt")


def config_changes(saved: Mapping[str, Any], cfg: Mapping[str, Any], ignore=(), prefix: str = "") -> List[str]:
    """The dotted keys whose values differ between two resolved configs (``ignore``: top-level keys)."""
    out: List[str] = []
    for key in sorted(set(saved) | set(cfg), key=str):
        if key in ignore:
            continue
        a, b = saved.get(key), cfg.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_changes(a, b, (), f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out
