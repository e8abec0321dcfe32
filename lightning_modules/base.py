"""The one base every supervised system here shares: train/val/test steps go through ``_shared_step``."""
from typing import Dict

import pytorch_lightning as pl
import torch


class SharedStepModule(pl.LightningModule):
    """Subclasses implement ``_shared_step(batch, stage)`` with stage in {'train', 'val', 'test'}."""

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def _shared_step(self, batch: Dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        raise NotImplementedError
