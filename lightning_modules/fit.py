"""Train one LightningModule from a config.

    python -m lightning_modules.fit [NAME_OR_YAML] [key=value ...]

NAME is a file in ``configs/`` (default: ``autoencoder``, the offline MNIST autoencoder), a
.yaml path, or an earlier run folder. Writes ``runs/<name>/<stamp>/`` with ``config.yaml``,
``checkpoints/{best,last}.ckpt``, ``metrics.csv``, TensorBoard events and ``test_metrics.json``;
prints that folder. ``resume=<run folder>`` continues a run from its ``last.ckpt``.
"""
import csv
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.plugins.io import TorchCheckpointIO

from configs import available_configs, load_config
from datamodules import get_datamodule_class
from lightning_modules import get_module_class
from lightning_modules.checkpoints import CHECKPOINT_TAG
from utils.cli import run_cli
from utils.errors import MissingFileError
from utils.io import atomic_torch_save, atomic_write_text
from utils.runs import latest_run, new_run_dir, save_run_config

log = logging.getLogger("lightning_modules.fit")
SECTIONS = {"module": get_module_class, "data": get_datamodule_class}


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
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class TagCheckpoint(Callback):
    """Stores the registry name and the run config inside every checkpoint."""

    def __init__(self, cfg: Dict[str, Any]):
        self.cfg = cfg

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint[CHECKPOINT_TAG] = {"module": self.cfg["module"]["name"], "config": self.cfg}


def fit(cfg: Dict[str, Any]) -> Path:
    """Run one training from a resolved config (see ``configs.schema.FitConfig``); return the run folder."""
    if cfg["num_threads"]:
        torch.set_num_threads(cfg["num_threads"])
    pl.seed_everything(cfg["seed"], workers=True)
    resume_ckpt: Optional[Path] = None
    if cfg["resume"]:
        run_dir = latest_run(Path(cfg["resume"]))
        resume_ckpt = run_dir / "checkpoints" / "last.ckpt"
        if not resume_ckpt.is_file():
            raise MissingFileError(f"cannot resume: '{resume_ckpt}' does not exist")
    else:
        run_dir = new_run_dir(cfg["out_dir"], cfg["name"])
    try:
        return _fit_in(cfg, run_dir, resume_ckpt)
    except BaseException:
        if resume_ckpt is None and not any((run_dir / "checkpoints").glob("*.ckpt")):
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping: leave no half-written run
        raise


def _fit_in(cfg: Dict[str, Any], run_dir: Path, resume_ckpt: Optional[Path]) -> Path:
    module_cls = get_module_class(cfg["module"]["name"])
    module = module_cls(**{k: v for k, v in cfg["module"].items() if k != "name"})
    data = get_datamodule_class(cfg["data"]["name"])(**{k: v for k, v in cfg["data"].items() if k != "name"})
    save_run_config(cfg, run_dir)
    monitor = cfg["monitor"] or module_cls.monitor[0]
    mode = cfg["monitor_mode"] or module_cls.monitor[1]
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                 save_last=True, save_top_k=1, auto_insert_metric_name=False)
    trainer = pl.Trainer(
        **cfg["trainer"], default_root_dir=run_dir, callbacks=[checkpoint, TagCheckpoint(cfg)],
        logger=[RunCSVLogger(run_dir, name="", version=""), TensorBoardLogger(run_dir, name="tensorboard", version="")],
        plugins=[AtomicCheckpointIO()],
    )
    log.info("run folder: %s", run_dir)
    trainer.fit(module, datamodule=data, ckpt_path=resume_ckpt)
    has_best = bool(checkpoint.best_model_path)
    results = trainer.test(module, datamodule=data, ckpt_path="best" if has_best else None)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    atomic_write_text(run_dir / "test_metrics.json", json.dumps(
        {"checkpoint": checkpoint.best_model_path or None, "monitor": monitor, "metrics": metrics}, indent=2))
    return run_dir


def _usage() -> str:
    return (f"{__doc__}\nexperiments: {', '.join(available_configs())}\n"
            "examples:\n  python -m lightning_modules.fit autoencoder trainer.max_epochs=1 data.batch_size=64\n"
            "  python -m lightning_modules.fit latent_gan ae_checkpoint=runs/autoencoder\n")


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(_usage())
        return 0
    name = args.pop(0) if args and "=" not in args[0] else "autoencoder"
    return run_cli(lambda: fit(load_config(name, args, sections=SECTIONS)))


if __name__ == "__main__":
    sys.exit(main())
