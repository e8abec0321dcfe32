"""The bases of the systems here: distributed-aware logging, and train/val/test steps through ``_shared_step``."""
from typing import Any, Dict, Optional

import pytorch_lightning as pl
import torch


class DistributedLogging(pl.LightningModule):
    """``self.log`` / ``self.log_dict`` average validation and test values over the processes of a
    distributed run (``sync_dist``: each process sees a share of the data, and best-checkpoint choice and
    ``test_metrics.json`` need the whole); training values stay per process (no collective every step).
    On one process nothing changes. An explicit ``sync_dist=`` wins."""

    def _sync_dist(self, sync_dist: Optional[bool]) -> bool:
        if sync_dist is not None:
            return sync_dist
        return self._trainer is not None and not self._trainer.training

    def log(self, name: str, value: Any, *args, sync_dist: Optional[bool] = None, **kwargs) -> None:
        super().log(name, value, *args, sync_dist=self._sync_dist(sync_dist), **kwargs)

    def log_dict(self, dictionary: Any, *args, sync_dist: Optional[bool] = None, **kwargs) -> None:
        super().log_dict(dictionary, *args, sync_dist=self._sync_dist(sync_dist), **kwargs)


class SharedStepModule(DistributedLogging):
    """Subclasses implement ``_shared_step(batch, stage)`` with stage in {'train', 'val', 'test'}."""

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def _shared_step(self, batch: Dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        raise NotImplementedError
