"""Train one LightningModule from a config.

    python -m lightning_modules.fit [NAME_OR_YAML] [key=value ...]

NAME is a file in ``configs/`` (default: ``autoencoder``, the offline MNIST autoencoder), a
.yaml path, or an earlier run folder. Writes ``runs/<name>/<stamp>/`` with ``config.yaml``,
``checkpoints/{best,last}.ckpt``, ``metrics.csv``, TensorBoard events and ``test_metrics.json``
(written last: the run's completion mark); prints that folder.

    python -m lightning_modules.fit resume=runs/autoencoder/<stamp>

continues an unfinished run (killed, interrupted) in its own folder from its ``checkpoints/last.ckpt``,
with the run's saved config (overrides must not change it); a moved or copied run folder resumes in
place, from and into its own checkpoints.

    python -m lightning_modules.fit autoencoder trainer.strategy=ddp trainer.devices=2 [trainer.num_nodes=M]

trains data-parallel on 2 processes (GPUs, or CPU processes over gloo) into one run folder, written by
rank 0 (``lightning_modules/distributed.py``; under SLURM start it with srun, or use torchrun).
"""
import csv
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from configs import available_configs, load_config
from configs.schema import TrainerConfig, with_trainer_defaults
from configs.loader import with_section_defaults
from datamodules import get_datamodule_class
from lightning_modules import get_module_class
from lightning_modules.checkpoints import CHECKPOINT_TAG, checkpoint_kind
from lightning_modules.distributed import SharedRunFolder, check_launch, is_first_process, placeholder_dir
from utils.cli import config_name, run_cli, wants_help
from utils.errors import Interrupted, MissingFileError, UserError
from utils.io import atomic_torch_save, atomic_write_text
from utils.runs import (
    RUN_CONFIG,
    check_output_dir,
    config_changes,
    finished,
    latest_run,
    new_run_dir,
    save_run_config,
)

log = logging.getLogger("lightning_modules.fit")
SECTIONS = {"module": get_module_class, "data": get_datamodule_class}
SUMMARY_FILE = "test_metrics.json"  # written last: the run's completion mark (utils.runs.FINISHED_FILES)
NOT_COMPARED = ("resume", "out_dir")  # keys a resume may change: where the run is, not what it computes
BUDGET = ("trainer.max_epochs", "trainer.max_steps")  # a resume may raise these: train the same run further


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints go through a temp file + rename: a kill never leaves a truncated .ckpt."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, Path(path))


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning deletes an existing metrics.csv here; a resumed run appends to it instead.
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as fh:
                self.metrics_keys = next(csv.reader(fh), [])


class RunCSVLogger(CSVLogger):
    """``metrics.csv`` directly in the run folder, continued (not replaced) when a run resumes."""

    @property
    @rank_zero_experiment  # ranks > 0 of a distributed run write nothing
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class RunCheckpoint(ModelCheckpoint):
    """``best.ckpt`` / ``last.ckpt`` of a run folder, overwritten in place (never ``best-v1.ckpt``).

    A run folder that was moved or copied since its checkpoints were written resumes with its own
    files: the stored paths of the old folder are mapped onto this one, so the best score is kept and
    nothing in the old folder is read, replaced or deleted.
    """

    def __init__(self, **kwargs):
        super().__init__(enable_version_counter=False, **kwargs)

    @property
    def state_key(self) -> str:  # the key ModelCheckpoint stored: runs written before this class resume too
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__):]

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and os.path.normpath(old) != os.path.normpath(new):
            def here(path):
                return os.path.join(new, os.path.relpath(path, old)) if isinstance(path, str) and path else path
            log.warning("run folder moved (checkpoints were in %s): resuming with the checkpoints in %s", old, new)
            state_dict = {**state_dict, "dirpath": new,
                          "best_model_path": here(state_dict.get("best_model_path")),
                          "kth_best_model_path": here(state_dict.get("kth_best_model_path")),
                          "last_model_path": here(state_dict.get("last_model_path")),
                          "best_k_models": {here(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}
        super().load_state_dict(state_dict)


class TagCheckpoint(Callback):
    """Stores the registry name and the run config inside every checkpoint."""

    def __init__(self, cfg: Dict[str, Any]):
        self.cfg = cfg

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint[CHECKPOINT_TAG] = {"module": self.cfg["module"]["name"], "config": self.cfg}


def resume_folder(cfg: Dict[str, Any]) -> Tuple[Path, bool]:
    """The run ``cfg['resume']`` names and whether its budget (:data:`BUDGET`) changes, checked before
    anything is written: its config equals ``cfg`` up to :data:`NOT_COMPARED` and the budget, a finished
    run is resumed only to train further, its ``last.ckpt`` is a readable checkpoint of its module, the
    folder is writable."""
    run_dir = latest_run(Path(cfg["resume"]))
    saved = with_section_defaults(with_trainer_defaults(OmegaConf.to_container(OmegaConf.load(run_dir / RUN_CONFIG),
                                                                              resolve=True)), SECTIONS)
    all_changes = config_changes(saved, cfg, NOT_COMPARED)
    changed = [key for key in all_changes if key not in BUDGET]
    if finished(run_dir) and not all_changes:
        raise UserError(f"cannot resume '{run_dir}': it finished ({SUMMARY_FILE} exists); to train it further "
                        "raise trainer.max_epochs or trainer.max_steps")
    if changed:
        shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
        raise UserError(f"cannot resume '{run_dir}' with a different config ({shown} differ): run "
                        f"`python -m lightning_modules.fit resume={run_dir}` without a config or overrides")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise MissingFileError(f"cannot resume: '{ckpt}' does not exist (the run stopped before its first epoch "
                               "ended; start it again instead)")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - empty, truncated or not a torch file: the user's file
        detail = " ".join(str(err).split())[:200]
        raise UserError(f"cannot resume: '{ckpt}' is not a readable checkpoint ({type(err).__name__}: {detail})") from None
    if not isinstance(state, dict) or "state_dict" not in state or checkpoint_kind(state) != cfg["module"]["name"]:
        found = checkpoint_kind(state) if isinstance(state, dict) else None
        raise UserError(f"cannot resume: '{ckpt}' is not a '{cfg['module']['name']}' checkpoint of this suite "
                        f"(holds {found!r})")
    check_output_dir(run_dir, "resume")
    return run_dir, bool(all_changes)


def fit(cfg: Dict[str, Any]) -> Path:
    """Run one training from a resolved config (see ``configs.schema.FitConfig``); return the run folder.

    In a distributed run every process calls this; only rank 0 creates and writes the run folder
    (:mod:`lightning_modules.distributed`), and every process returns it."""
    resume_ckpt: Optional[Path] = None
    first = is_first_process()
    if cfg["resume"]:
        run_dir, extended = resume_folder(cfg)
        resume_ckpt = run_dir / "checkpoints" / "last.ckpt"
        if extended and first:  # unfinished again until the longer training ends; config.yaml states the new budget
            (run_dir / SUMMARY_FILE).unlink(missing_ok=True)
            save_run_config(cfg, run_dir)
            log.warning("resuming %s with a new budget: trainer.max_epochs=%s, trainer.max_steps=%s", run_dir,
                        cfg["trainer"]["max_epochs"], cfg["trainer"]["max_steps"])
    else:
        check_output_dir(cfg["out_dir"], "out_dir")
    if cfg["num_threads"]:
        torch.set_num_threads(cfg["num_threads"])
    pl.seed_everything(cfg["seed"], workers=True)
    if resume_ckpt is None:
        run_dir = new_run_dir(cfg["out_dir"], cfg["name"]) if first else placeholder_dir(cfg["out_dir"], cfg["name"])
    try:
        return _fit_in(cfg, run_dir, resume_ckpt, first)
    except BaseException as err:
        if not first:
            raise  # rank 0 decides what becomes of its run folder
        kept = resume_ckpt is not None or any((run_dir / "checkpoints").glob("*.ckpt"))
        if not kept:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping: leave no half-written run
        elif isinstance(err, Interrupted):
            err.notes.append(f"run {run_dir} kept: continue it with python -m lightning_modules.fit resume={run_dir}")
        raise


def _trainer(cfg: Dict[str, Any], **kwargs) -> pl.Trainer:
    try:
        return pl.Trainer(**cfg["trainer"], **kwargs)
    except (MisconfigurationException, ValueError) as err:  # the trainer.* values the user set
        detail = " ".join(str(err).split())
        defaults = asdict(TrainerConfig())
        changed = {k: v for k, v in cfg["trainer"].items() if defaults.get(k, object()) != v} or cfg["trainer"]
        shown = " ".join(f"trainer.{k}={v}" for k, v in changed.items())
        raise UserError(f"bad trainer settings ({shown}): {detail}") from None


def _fit_in(cfg: Dict[str, Any], run_dir: Path, resume_ckpt: Optional[Path], first: bool) -> Path:
    module_cls = get_module_class(cfg["module"]["name"])
    module = module_cls(**{k: v for k, v in cfg["module"].items() if k != "name"})
    data = get_datamodule_class(cfg["data"]["name"])(**{k: v for k, v in cfg["data"].items() if k != "name"})
    monitor = cfg["monitor"] or module_cls.monitor[0]
    mode = cfg["monitor_mode"] or module_cls.monitor[1]
    checkpoint = RunCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                               save_last=True, save_top_k=1, auto_insert_metric_name=False)
    folder = SharedRunFolder(run_dir)
    trainer = _trainer(
        cfg, default_root_dir=run_dir, callbacks=[folder, checkpoint, TagCheckpoint(cfg)],
        logger=[RunCSVLogger(run_dir, name="", version=""), TensorBoardLogger(run_dir, name="tensorboard", version="")],
        plugins=[AtomicCheckpointIO()],
    )
    check_launch(trainer, first)
    if resume_ckpt is None and first:
        save_run_config(cfg, run_dir)  # a resumed run keeps its own config.yaml (rewritten above for a new budget)
    if first:
        log.info("run folder: %s", run_dir)
    trainer.fit(module, datamodule=data, ckpt_path=resume_ckpt)
    has_best = bool(checkpoint.best_model_path)
    results = trainer.test(module, datamodule=data, ckpt_path="best" if has_best else None)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if first:
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(
            {"checkpoint": checkpoint.best_model_path or None, "monitor": monitor, "metrics": metrics,
             "world_size": trainer.world_size}, indent=2))
    return folder.run_dir


def _usage() -> str:
    return (f"{__doc__}\nexperiments: {', '.join(available_configs())}\n"
            "examples:\n  python -m lightning_modules.fit autoencoder trainer.max_epochs=1 data.batch_size=64\n"
            "  python -m lightning_modules.fit latent_gan ae_checkpoint=runs/autoencoder\n")


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if wants_help(args):
        print(_usage())
        return 0
    # config_name inside run_cli: a `resume=` that names no run is one line, not a traceback
    return run_cli(lambda: fit(load_config(*config_name(args, "autoencoder"), sections=SECTIONS)))


if __name__ == "__main__":
    sys.exit(main())
