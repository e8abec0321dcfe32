"""Small pieces shared by the datamodules."""
from typing import Any, Dict, Mapping

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from utils.errors import UserError


class TensorDictDataset(Dataset):
    """Rows of equally long tensors as dict samples: ``ds[i] == {k: t[i] for k, t in tensors}``."""

    def __init__(self, **tensors: torch.Tensor):
        lengths = {k: len(t) for k, t in tensors.items()}
        if not tensors or len(set(lengths.values())) != 1:
            raise UserError(f"TensorDictDataset needs tensors of one common length, got {lengths}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        return {k: t[idx] for k, t in self.tensors.items()}


def forward_kwargs(owner: type, kwargs: Mapping[str, Any], **own: Any) -> Any:
    """Call ``callee(**kwargs, **own)`` for a class whose ``**kwargs`` stand for a few keyword arguments of
    another callable, declared as ``owner.kwargs_to = (callee, names)``.

    The config loader reads the same declaration, so those names are config keys of ``owner`` with the
    callee's types and defaults. A key outside ``names`` is refused here too, as a plain signature would.
    """
    callee, names = owner.kwargs_to
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise TypeError(f"{owner.__name__}() got unexpected keyword arguments {unknown}")
    return callee(**kwargs, **own)


class SplitDataModule(pl.LightningDataModule):
    """A datamodule whose ``setup`` fills ``self.splits`` ('train', 'val', 'test'); loaders come from here.

    Subclasses save ``batch_size`` and ``num_workers`` as hyper-parameters.
    """

    def __init__(self):
        super().__init__()
        self.splits: Dict[str, Dataset] = {}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.splits:
            self.setup()
        workers = self.hparams.num_workers
        return DataLoader(self.splits[split], batch_size=self.hparams.batch_size, shuffle=shuffle,
                          num_workers=workers, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
