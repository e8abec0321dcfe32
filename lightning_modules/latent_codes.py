"""AE codes of MNIST digits, the training data of the latent GAN (registered as datamodule ``latent_codes``).

Batch keys: ``code`` N×code_dim float, ``label`` N int64. The codes are computed once in
``setup`` with the frozen autoencoder from ``ae_checkpoint`` (a .ckpt file or a run folder).
"""
import logging
from typing import Optional

import torch

from datamodules.common import SplitDataModule, TensorDictDataset, forward_kwargs
from datamodules.mnist import SPLIT_OPTIONS, MNISTDataModule
from lightning_modules.checkpoints import load_module
from utils.errors import UserError

log = logging.getLogger(__name__)


class LatentCodesDataModule(SplitDataModule):
    """Encodes the splits of an :class:`MNISTDataModule` with a frozen AE."""

    kwargs_to = (MNISTDataModule, SPLIT_OPTIONS)
    """``**digits``: these arguments of the inner :class:`MNISTDataModule`, with its defaults."""

    def __init__(self, ae_checkpoint: Optional[str] = None, batch_size: int = 128, num_workers: int = 0, **digits):
        super().__init__()
        if not ae_checkpoint:
            raise UserError("data.ae_checkpoint is required: an autoencoder .ckpt or run folder "
                            "(e.g. ae_checkpoint=runs/autoencoder)")
        self.save_hyperparameters()
        self.digits = forward_kwargs(type(self), digits, batch_size=512)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.splits:
            return
        ae = load_module(self.hparams.ae_checkpoint, "autoencoder")
        self.digits.setup()
        for split, ds in self.digits.splits.items():
            images = ds.images.float().div(255.0).unsqueeze(1)
            with torch.inference_mode():
                codes = torch.cat([ae.encode(chunk) for chunk in images.split(1024)])
            self.splits[split] = TensorDictDataset(code=codes, label=ds.labels)
        train_codes = self.splits["train"].tensors["code"]
        self.code_mean, self.code_std = train_codes.mean(0), train_codes.std(0).clamp_min(1e-6)
        log.warning("encoded %s digits into %d-d codes with AE %s",
                    {k: len(v) for k, v in self.splits.items()}, train_codes.shape[1], self.hparams.ae_checkpoint)

