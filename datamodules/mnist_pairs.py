"""(source digit, goal digit) pairs of experiment C on the splits of :class:`MNISTDataModule`.

The goal of a source digit is drawn from its own class (``same``), from another class
(``other``) or from any digit (``any``) by :class:`GoalSampler`, which the RL environment uses
too (with its counter-based random streams), so both paths draw goals the same way.

Batch keys: ``source`` and ``goal`` N×1×28×28 in [0, 1], ``source_label`` and ``goal_label`` N int64.
Train pairs are re-drawn at every access; val/test pairs are fixed by ``seed``.
"""
from typing import Dict, Literal, Optional

import torch
from torch.utils.data import Dataset

from datamodules.common import SplitDataModule, forward_kwargs
from datamodules.mnist import SPLIT_OPTIONS, MNISTDataModule
from utils.errors import UserError

GOAL_CLASSES = ("same", "other", "any")
RAND_HIGH = 1 << 20  # the random ints the sampler maps to indices lie in [0, RAND_HIGH)


class GoalSampler:
    """Goal indices into a pool of labelled digits, batched (no Python loop over rows)."""

    def __init__(self, labels_N: torch.Tensor, goal_class: str = "other"):
        if goal_class not in GOAL_CLASSES:
            raise UserError(f"goal_class={goal_class!r} invalid: expected one of {list(GOAL_CLASSES)}")
        labels = labels_N.long()
        self.goal_class, self.n = goal_class, len(labels)
        self.classes = torch.unique(labels)  # sorted classes present in the pool
        if goal_class == "other" and len(self.classes) < 2:
            raise UserError("goal_class='other' needs digits of at least two classes in the pool")
        counts = torch.stack([(labels == c).sum() for c in self.classes])
        table = torch.zeros(len(self.classes), int(counts.max()), dtype=torch.long)
        for i, c in enumerate(self.classes):
            members = (labels == c).nonzero()[:, 0]
            table[i, :len(members)] = members
        self.counts, self.table = counts, table
        self.position = torch.full((int(self.classes.max()) + 1,), -1, dtype=torch.long)
        self.position[self.classes] = torch.arange(len(self.classes))
        self._on: dict = {}  # device -> (table, counts, position) there, so a GPU core copies them once

    def _tables(self, dev: torch.device):
        if dev not in self._on:
            self._on[dev] = (self.table.to(dev), self.counts.to(dev), self.position.to(dev))
        return self._on[dev]

    def sample(self, source_labels_R: torch.Tensor, rand_a_R: torch.Tensor, rand_b_R: torch.Tensor) -> torch.Tensor:
        """Goal indices R for sources of these labels, from two random ints per row in [0, RAND_HIGH)."""
        dev = source_labels_R.device
        table, counts, position = self._tables(dev)
        if self.goal_class == "any":
            return rand_a_R.long() % self.n
        pos = position[source_labels_R.long()]
        if (pos < 0).any():
            raise UserError("a source label has no digit of its class in the goal pool")
        if self.goal_class == "other":  # shift by 1..K-1 classes: never the source's own class
            pos = (pos + 1 + rand_b_R.long() % (len(self.classes) - 1)) % len(self.classes)
        return table[pos, rand_a_R.long() % counts[pos]]


class PairDataset(Dataset):
    """Digits of one split paired with goals from the same split."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, goal_class: str, fixed_seed: Optional[int]):
        self.images, self.labels = images, labels
        self.sampler = GoalSampler(labels, goal_class)
        self.fixed_seed = fixed_seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        gen = None if self.fixed_seed is None else torch.Generator().manual_seed(self.fixed_seed * 1_000_003 + int(idx))
        rand = torch.randint(0, RAND_HIGH, (2, 1), generator=gen)
        goal = int(self.sampler.sample(self.labels[idx:idx + 1], rand[0], rand[1])[0])
        return {"source": self.images[idx].float().div(255.0).unsqueeze(0), "source_label": self.labels[idx],
                "goal": self.images[goal].float().div(255.0).unsqueeze(0), "goal_label": self.labels[goal]}


class MNISTPairsDataModule(SplitDataModule):
    """Pairs on the train/val/test splits of :class:`MNISTDataModule` (same sources and options)."""

    kwargs_to = (MNISTDataModule, (*SPLIT_OPTIONS, "download"))
    """``**digits``: these arguments of the inner :class:`MNISTDataModule`, with its defaults."""

    def __init__(self, goal_class: Literal["same", "other", "any"] = "other", batch_size: int = 64,
                 num_workers: int = 0, **digits):
        super().__init__()
        self.save_hyperparameters()
        self.digits = forward_kwargs(type(self), digits, batch_size=batch_size)

    def prepare_data(self) -> None:
        self.digits.prepare_data()

    def setup(self, stage: Optional[str] = None) -> None:
        if self.splits:
            return
        self.digits.setup(stage)
        seed = self.digits.hparams.seed
        for split, fixed in (("train", None), ("val", seed + 1), ("test", seed + 2)):
            ds = self.digits.splits[split]
            self.splits[split] = PairDataset(ds.images, ds.labels, self.hparams.goal_class, fixed)
