"""Shared fixtures: tiny MNIST-like IDX folders and fast trainer settings (offline, seeded)."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

FAST_TRAINER = [
    "trainer.limit_train_batches=2", "trainer.max_epochs=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
]


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    Path(path).write_bytes(data)


def make_idx_folder(folder: Path, n_train: int = 64, n_test: int = 32, gz: bool = True, seed: int = 0) -> Path:
    """A folder with train/t10k IDX files of random 'digits': a bright square whose position encodes the label."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, lab in enumerate(labels):
            r, c = 2 + 2 * (lab // 5) * 5, 2 + 5 * (lab % 5)
            images[i, r:r + 8, c:c + 4] = 255
        ext = ".gz" if gz else ""
        write_idx(folder / f"{split}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", labels)
    return folder


@pytest.fixture
def idx_dir(tmp_path) -> Path:
    return make_idx_folder(tmp_path / "mnist_idx")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
