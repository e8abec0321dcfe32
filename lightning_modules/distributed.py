"""One fit on several processes: ``trainer.strategy=ddp trainer.devices=N trainer.num_nodes=M``.

Every process of a distributed run runs :func:`lightning_modules.fit.fit` with the same config. They
are started by Lightning (``python -m lightning_modules.fit ... trainer.strategy=ddp``: the first process
re-runs its own command line once per further device, setting ``LOCAL_RANK``), by ``srun`` under SLURM
or by ``torchrun``. Only the first process (global rank 0) creates the run folder and writes
``config.yaml`` and ``test_metrics.json``; Lightning writes checkpoints and logs from rank 0 only. The
other processes hold a placeholder path that nothing writes to until the process group is up, then take
rank 0's folder (:class:`SharedRunFolder`). With ``ddp_spawn`` the workers are started inside
``trainer.fit`` / ``trainer.test`` and only the calling process runs ``fit``.
"""
import os
import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from utils.errors import UserError

ENTRY = "lightning_modules.fit"  # the module Lightning's ddp launcher must re-run: see check_launch
PLACEHOLDER = "not-rank-0"  # the run folder of ranks > 0 before rank 0's is known; never created


def is_first_process() -> bool:
    """Whether this process is global rank 0, as its launcher's environment says: ``RANK`` (torchrun),
    ``LOCAL_RANK`` and ``NODE_RANK`` (a process Lightning's ddp started), ``SLURM_PROCID`` (srun), read in
    Lightning's order. A process no launcher started is rank 0 (Lightning starts the others from it)."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "LOCAL_RANK" in env:  # before SLURM_PROCID: inside an allocation, SLURM's variables are inherited
        return int(env["LOCAL_RANK"]) == 0 and int(env.get("NODE_RANK", 0)) == 0
    if "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]) == 0
    return int(env.get("NODE_RANK", 0)) == 0


def placeholder_dir(out_dir: str, name: str) -> Path:
    """The run folder a rank > 0 holds until :class:`SharedRunFolder` gives it rank 0's (never created)."""
    return Path(out_dir) / name / PLACEHOLDER


def check_launch(trainer: pl.Trainer, first: bool) -> None:
    """Refuse, in one line, a launch Lightning cannot do from here: its ``ddp`` launcher starts the other
    processes by re-running this process's command line, which repeats this fit only when that command
    line is ``python -m lightning_modules.fit`` (not e.g. a benchmark calling ``fit`` in-process). Also
    checks that Lightning agrees with :func:`is_first_process` on which process is rank 0."""
    if trainer.is_global_zero != first:
        raise RuntimeError(f"this process is rank {trainer.global_rank} to Lightning, but its environment "
                           f"said it {'is' if first else 'is not'} rank 0: unsupported launcher")
    launcher = trainer.strategy.launcher
    if not isinstance(launcher, _SubprocessScriptLauncher) or launcher.num_processes < 2:
        return
    if launcher.cluster_environment.creates_processes_externally:
        return
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main is None or main.name != ENTRY:
        strategy = type(trainer.strategy).__name__
        raise UserError(f"trainer.strategy ({strategy}) with trainer.devices={launcher.num_processes} starts its "
                        f"processes by re-running the command line, so it needs `python -m {ENTRY}` (or srun / "
                        "torchrun): use trainer.strategy=ddp_spawn when calling fit() in-process")


class SharedRunFolder(Callback):
    """The run folder every process uses: rank 0's, sent to the others once the process group is up."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.run_dir = Path(trainer.strategy.broadcast(str(self.run_dir)))
