"""Schemas with defaults for every run config.

Precedence: these dataclass defaults -> the experiment YAML -> ``key=value`` overrides.
The ``module``/``data``/... sections are free-form here; the loader validates them against the
``__init__`` signature of the class their ``name`` picks from a registry.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union


@dataclass
class TrainerConfig:
    """The subset of ``pl.Trainer`` arguments a run may set."""

    max_epochs: int = 10
    """Epochs to train (-1: until max_steps)."""
    max_steps: int = -1
    """Optimizer steps to train (-1: until max_epochs)."""
    accelerator: str = "auto"
    """'cpu', 'gpu' or 'auto' (GPU when one is visible)."""
    devices: Union[int, str] = 1
    precision: str = "32-true"
    """Numeric precision, chosen here only ('32-true', 'bf16-mixed', ...)."""
    log_every_n_steps: int = 20
    limit_train_batches: Union[int, float] = 1.0
    """Fraction (float) or number (int) of training batches per epoch."""
    limit_val_batches: Union[int, float] = 1.0
    limit_test_batches: Union[int, float] = 1.0
    gradient_clip_val: Optional[float] = None
    enable_progress_bar: bool = True
    fast_dev_run: bool = False
    """One batch of train/val/test, no checkpoints: a smoke test."""


@dataclass
class FitConfig:
    """One ``python -m lightning_modules.fit`` run."""

    name: str = "autoencoder"
    """Run name: outputs go to ``<out_dir>/<name>/<timestamp>/``."""
    seed: int = 0
    """Seeds python, numpy and torch (and dataloader workers)."""
    out_dir: str = "runs"
    module: Dict[str, Any] = field(default_factory=dict)
    """``name`` = LightningModule registry key; other keys = its __init__ arguments."""
    data: Dict[str, Any] = field(default_factory=dict)
    """``name`` = LightningDataModule registry key; other keys = its __init__ arguments."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    monitor: Optional[str] = None
    """Metric that selects the best checkpoint (default: the module's ``monitor``)."""
    monitor_mode: Optional[str] = None
    """'min' or 'max' (default: the module's)."""
    ae_checkpoint: Optional[str] = None
    """Autoencoder checkpoint or run folder, for configs built on the AE (``${ae_checkpoint}``)."""
    resume: Optional[str] = None
    """A run folder to continue from its ``checkpoints/last.ckpt``."""
    num_threads: int = 0
    """torch intra-op threads (0: torch's default)."""
