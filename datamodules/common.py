"""Small pieces shared by the datamodules."""
from typing import Dict

import torch
from torch.utils.data import Dataset


class TensorDictDataset(Dataset):
    """Rows of equally long tensors as dict samples: ``ds[i] == {k: t[i] for k, t in tensors}``."""

    def __init__(self, **tensors: torch.Tensor):
        lengths = {k: len(t) for k, t in tensors.items()}
        if not tensors or len(set(lengths.values())) != 1:
            raise ValueError(f"TensorDictDataset needs tensors of one common length, got {lengths}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        return {k: t[idx] for k, t in self.tensors.items()}
