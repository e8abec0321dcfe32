"""Shared fixtures: tiny MNIST-like IDX folders and fast trainer settings (offline, seeded)."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn


class CountingModule(nn.Module):
    """Wraps a module and counts forward calls (one per batched step is the contract)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def paired_vector_envs(base_core, n: int, seed: int):
    """The batched env and its per-env DummyVectorEnv reference over ``n`` copies of a 1-env core,
    both seeded with ``seed`` and reset; asserts their first observations are identical."""
    from rl.envs import BatchedVectorEnv, make_dummy_vector_env

    batched = BatchedVectorEnv(base_core.spawn(n, seed))
    reference = make_dummy_vector_env(base_core.spawn, n, seed)
    for venv in (batched, reference):
        venv.seed(seed)
    np.testing.assert_array_equal(batched.reset()[0], reference.reset()[0])
    return batched, reference


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


def write_utkface_folder(folder: Path, pixels) -> Path:
    """A UTKFace-named folder: one ``{age}_{gender}_0_<stamp>.jpg.chip.jpg`` photo per H×W×3 uint8 array of
    ``pixels`` (photo i: age 5 + 5·i, gender i mod 2)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(pixels):
        Image.fromarray(arr).save(folder / f"{5 + 5 * i}_{i % 2}_0_2017010915055{i:04d}.jpg.chip.jpg", quality=95)
    return folder


@pytest.fixture
def idx_dir(tmp_path) -> Path:
    return make_idx_folder(tmp_path / "mnist_idx")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    # one thread: these tiny nets run several times faster than with 2 on a 2-core machine
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(scope="session")
def mnist_stage_runs(tmp_path_factory) -> dict:
    """Tiny trained runs of every experiment-B stage (2 batches each), shared by the slow-ish tests."""
    from configs import load_config
    from lightning_modules.fit import SECTIONS, fit

    root = tmp_path_factory.mktemp("stages")
    idx = make_idx_folder(root / "idx", n_train=96, n_test=40)
    common = [*FAST_TRAINER, f"out_dir={root / 'runs'}", "data.source=idx", f"data.root={idx}", "data.batch_size=16"]
    runs = {"idx": idx, "root": root}
    runs["autoencoder"] = fit(load_config("autoencoder", common, sections=SECTIONS))
    runs["latent_gan"] = fit(load_config("latent_gan", [*common, f"ae_checkpoint={runs['autoencoder']}"], sections=SECTIONS))
    runs["classifier"] = fit(load_config("classifier", common, sections=SECTIONS))
    runs["judge"] = fit(load_config("judge", common, sections=SECTIONS))
    return runs


def tiny_agent_overrides(runs: dict) -> list:
    """rl.train overrides for a few hundred steps on the tiny stage runs."""
    return [f"env.ae_checkpoint={runs['autoencoder']}", f"env.gan_checkpoint={runs['latent_gan']}",
            f"env.classifier_checkpoint={runs['classifier']}", "env.source=idx", f"env.root={runs['idx']}",
            "train.total_steps=640", "train.warmup_steps=128", "train.epochs=2", "train.num_envs=16",
            "train.test_envs=8", "train.batch_size=32", "train.show_progress=false", "agent.hidden_sizes=[32,32]"]
