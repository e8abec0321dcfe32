"""Labelled face photos (UTKFace folders, IMDB-WIKI .mat files) as dict batches (docs/experiment-a.md).

Batch keys: ``image`` N×3×R×R float in [-1, 1] (the generators' range; R = ``resolution``,
default 64 = the offline DCGAN's), ``age`` N float32 years, ``gender`` N int64.

Gender convention (one for every source): **0 = male, 1 = female, -1 = unknown**. This is
UTKFace's own labelling; IMDB-WIKI's (1 male, 0 female, NaN) is converted to it. Only IMDB-WIKI
has unknowns; the gender classifier ignores -1 targets.

Splits: a seeded ``torch.Generator`` permutation cut into train/val/test fractions.
Decoding every JPEG each epoch is slow on 2 cores, so by default (``cache=True``) the resized
uint8 images are decoded once per datamodule instance and kept in memory (N×3×R×R bytes:
~120 MB for 9,780 faces at 64×64, but ~5.6 GB for all of IMDB at 64×64: there, set
``max_samples`` or ``cache=False``).
"""
import logging
import re
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from datamodules.common import SplitDataModule
from utils.errors import MissingFileError, UserError

log = logging.getLogger(__name__)

MALE, FEMALE, UNKNOWN_GENDER = 0, 1, -1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# {age}_{gender}_{race}_{17-digit stamp}.jpg[.chip.jpg]; race 0-4, gender 0 male / 1 female.
UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d{17})\.jpg(\.chip\.jpg)?$")
MAT_FIELDS = ("dob", "photo_taken", "full_path", "gender", "face_score", "second_face_score")
MATLAB_EPOCH = 719529  # MATLAB datenum of 1970-01-01


def parse_utkface_name(name: str) -> Optional[Tuple[int, int, int]]:
    """(age, gender, race) from a UTKFace file name, or None when the name is malformed."""
    match = UTK_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def scan_utkface(root: str) -> Tuple[List[Path], np.ndarray, np.ndarray]:
    """Image paths (sorted), ages (N float32) and genders (N int64, 0 = male) in a UTKFace folder.

    Image files with malformed names are skipped with one warning listing them.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise MissingFileError(f"UTKFace folder '{root}' does not exist (set data.root to a folder of "
                               "UTKFace images, e.g. ../shared/data/utkface/crop_part1)")
    paths, ages, genders, bad = [], [], [], []
    for path in sorted(folder.iterdir()):
        if not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        labels = parse_utkface_name(path.name)
        if labels is None:
            bad.append(path.name)
            continue
        paths.append(path)
        ages.append(labels[0])
        genders.append(labels[1])
    if bad:
        log.warning("skipped %d file(s) in '%s' with malformed UTKFace names (expected "
                    "{age}_{gender}_{race}_{17-digit stamp}.jpg[.chip.jpg]): %s",
                    len(bad), root, ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
    if not paths:
        raise UserError(f"no usable UTKFace images in '{root}' ({len(bad)} malformed names); expected "
                        "files named {age}_{gender}_{race}_{stamp}.jpg[.chip.jpg]")
    return paths, np.asarray(ages, np.float32), np.asarray(genders, np.int64)


def datenum_to_ymd(datenum: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day (int arrays) of MATLAB datenums (days since year 0; fractions ignored)."""
    days = np.floor(datenum).astype(np.int64) - MATLAB_EPOCH
    dates = np.datetime64("1970-01-01", "D") + days.astype("timedelta64[D]")
    years = dates.astype("datetime64[Y]")
    months = dates.astype("datetime64[M]")
    year = years.astype(np.int64) + 1970
    month = (months - years).astype(np.int64) + 1
    day = (dates - months).astype(np.int64) + 1
    return year, month, day


def imdb_wiki_age(dob: np.ndarray, photo_taken: np.ndarray) -> np.ndarray:
    """Age in whole years (N float) when the photo is assumed taken on 1 July of ``photo_taken``.

    ``dob`` is a MATLAB datenum; someone born after 1 July has not had that year's birthday yet.
    Invalid birth dates (datenum < 367, i.e. before year 1, or NaN) give NaN.
    """
    dob = np.asarray(dob, np.float64)
    valid = np.isfinite(dob) & (dob >= 367)
    year, month, day = datenum_to_ymd(np.where(valid, dob, MATLAB_EPOCH))
    after_july_first = (month > 7) | ((month == 7) & (day > 1))
    age = np.asarray(photo_taken, np.float64) - year - after_july_first
    return np.where(valid, age, np.nan)


def read_imdb_wiki_mat(path: str, db: str, min_face_score: float = 1.0
                       ) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """Relative image paths, ages (N float32) and genders (N int64, 0 = male, -1 unknown) kept
    from an IMDB-WIKI ``.mat``: finite face_score > ``min_face_score``, no second face, 0 < age <= 100.
    """
    from scipy.io import loadmat

    if not Path(path).is_file():
        raise MissingFileError(f"IMDB-WIKI file '{path}' does not exist")
    mat = loadmat(path)
    if db not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise UserError(f"'{path}' has no '{db}' struct; top-level keys: {keys}")
    meta = mat[db][0, 0]
    names = meta.dtype.names or ()
    missing = [f for f in MAT_FIELDS if f not in names]
    if missing:
        raise UserError(f"'{path}' [{db}] lacks field(s) {missing}; expected {list(MAT_FIELDS)}, found {list(names)}")
    col = {f: np.asarray(meta[f]).reshape(-1) for f in MAT_FIELDS}
    age = imdb_wiki_age(col["dob"].astype(np.float64), col["photo_taken"].astype(np.float64))
    face = col["face_score"].astype(np.float64)
    keep = (np.isfinite(face) & (face > min_face_score) & np.isnan(col["second_face_score"].astype(np.float64))
            & np.isfinite(age) & (age > 0) & (age <= 100))
    raw_gender = col["gender"].astype(np.float64)
    gender = np.where(np.isnan(raw_gender), UNKNOWN_GENDER, np.where(raw_gender == 1, MALE, FEMALE))
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        raise UserError(f"no usable entries in '{path}' [{db}] out of {len(age)}: none has a finite face_score > "
                        f"{min_face_score}, no second face and 0 < age <= 100")
    paths = [str(np.asarray(col["full_path"][i]).reshape(-1)[0]) for i in idx]
    log.info("IMDB-WIKI '%s' [%s]: kept %d of %d entries", path, db, len(idx), len(age))
    return paths, age[idx].astype(np.float32), gender[idx].astype(np.int64)


def load_face_image(path: Path, resolution: int) -> torch.Tensor:
    """One image file -> 3×R×R uint8 (RGB, resized with antialiasing); a file that is no image, or a
    truncated one, raises :class:`UserError` naming it."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (resolution, resolution))  # JPEG: decode at a reduced scale, much faster
            img = img.convert("RGB").resize((resolution, resolution), Image.BILINEAR, reducing_gap=None)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:  # PIL's ways of saying "bad image data"
        if isinstance(err, FileNotFoundError):
            raise MissingFileError(f"image '{path}' does not exist") from None
        raise UserError(f"image '{path}' cannot be decoded ({type(err).__name__}: {err}): not an image, or "
                        "truncated; remove or replace it") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


Augment = Literal["none", "domain"]


def domain_augmentation(resolution: int):
    """``augment="domain"`` (not from the paper): random changes a model should not read age from, so that
    one trained on photos transfers better to generated faces: a random resized crop (scale 0.75–1), colour
    jitter (brightness, contrast, saturation 0.3, hue 0.03), a blur half of the time (σ 0.1–1.2) and a
    down-and-up resampling (to 24–64 pixels) half of the time. Works on float images in [0, 1]."""
    from torchvision.transforms import v2

    def resample(img: torch.Tensor) -> torch.Tensor:
        side = int(torch.randint(max(4, resolution * 3 // 8), resolution + 1, ()))
        small = torch.nn.functional.interpolate(img[None], size=(side, side), mode="bilinear", antialias=True)
        return torch.nn.functional.interpolate(small, size=img.shape[-2:], mode="bilinear")[0]

    return v2.Compose([
        v2.RandomResizedCrop(resolution, scale=(0.75, 1.0), ratio=(0.9, 1.1), antialias=True),
        v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
        v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.2))], p=0.5),
        v2.RandomApply([v2.Lambda(resample)], p=0.5),
    ])


class FaceDataset(Dataset):
    """Dict samples from (paths, ages, genders); images from ``cache`` (N×3×R×R uint8) when given."""

    def __init__(self, paths: List[Path], ages: torch.Tensor, genders: torch.Tensor, indices: torch.Tensor,
                 resolution: int, cache: Optional[torch.Tensor] = None, hflip: bool = False,
                 augment: Augment = "none"):
        self.paths, self.ages, self.genders, self.indices = paths, ages, genders, indices
        self.resolution, self.cache, self.hflip = resolution, cache, hflip
        self.augment = domain_augmentation(resolution) if augment == "domain" else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        idx = int(self.indices[i])
        img = self.cache[idx] if self.cache is not None else load_face_image(self.paths[idx], self.resolution)
        if self.augment is not None:
            image = self.augment(img.float().div(255.0)).clamp(0.0, 1.0).mul(2.0).sub(1.0)
        else:
            image = img.float().div(127.5).sub(1.0)
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return {"image": image, "age": self.ages[idx], "gender": self.genders[idx]}


class _FaceDataModule(SplitDataModule):
    """Shared split / cache / loader logic; subclasses implement ``_records()``."""

    def _init_common(self, batch_size: int, resolution: int, val_fraction: float, test_fraction: float,
                     split_seed: int, max_samples: Optional[int]) -> None:
        if resolution <= 0 or batch_size <= 0:
            raise UserError(f"resolution and batch_size must be positive, got {resolution} and {batch_size}")
        if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
            raise UserError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be >= 0 "
                            "and sum to less than 1")
        if max_samples is not None and max_samples <= 0:
            raise UserError(f"max_samples must be positive or None, got {max_samples}")
        if self.hparams.augment not in ("none", "domain"):
            raise UserError(f"augment={self.hparams.augment!r} invalid: expected 'none' or 'domain'")
        self._cache: Optional[torch.Tensor] = None

    def _records(self) -> Tuple[List[Path], np.ndarray, np.ndarray]:
        raise NotImplementedError

    def setup(self, stage: Optional[str] = None) -> None:
        """Scan labels, split with a seeded permutation and (with ``cache``) decode the images once."""
        if self.splits:
            return
        hp = self.hparams
        paths, ages, genders = self._records()
        perm = torch.randperm(len(paths), generator=torch.Generator().manual_seed(hp.split_seed))
        perm = perm[: hp.max_samples] if hp.max_samples is not None else perm
        # Keep only the faces in use, in permuted order: the splits are then consecutive ranges.
        paths = [paths[i] for i in perm.tolist()]
        ages_t, genders_t = torch.from_numpy(ages[perm.numpy()]), torch.from_numpy(genders[perm.numpy()])
        n = len(paths)
        n_val, n_test = int(round(n * hp.val_fraction)), int(round(n * hp.test_fraction))
        if n - n_val - n_test <= 0:
            raise UserError(f"{n} faces are too few for val_fraction={hp.val_fraction}, "
                            f"test_fraction={hp.test_fraction}")
        order = torch.arange(n)
        parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
        if hp.cache:
            self._cache = self._decode_all(paths)
        for name, idx in parts.items():
            self.splits[name] = FaceDataset(paths, ages_t, genders_t, idx, hp.resolution, self._cache,
                                            hflip=hp.hflip and name == "train",
                                            augment=hp.augment if name == "train" else "none")
        log.info("%s: %d train / %d val / %d test faces at %d×%d", type(self).__name__,
                 len(parts["train"]), n_val, n_test, hp.resolution, hp.resolution)

    def _decode_all(self, paths: List[Path]) -> torch.Tensor:
        res = self.hparams.resolution
        cache = torch.empty(len(paths), 3, res, res, dtype=torch.uint8)
        for idx, path in enumerate(paths):
            cache[idx] = load_face_image(path, res)
        return cache


class UTKFaceDataModule(_FaceDataModule):
    """A UTKFace folder of ``{age}_{gender}_{race}_{stamp}.jpg[.chip.jpg]`` images.

    Args:
        root: the folder (e.g. ``../shared/data/utkface/crop_part1``).
        batch_size, num_workers: DataLoader settings.
        resolution: side R of the square images in batches.
        val_fraction, test_fraction: shares of the seeded permutation; train gets the rest.
        split_seed: seed of the split permutation.
        cache: decode the resized images once and keep them in memory.
        hflip: random horizontal flips on the train split.
        augment: ``none``, or ``domain`` (not from the paper): :func:`domain_augmentation` on the train split.
        max_samples: use only the first ``max_samples`` faces of the permutation (quick runs).
    """

    def __init__(self, root: str = "../shared/data/utkface/crop_part1", batch_size: int = 64,
                 resolution: int = 64, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 split_seed: int = 0, num_workers: int = 0, cache: bool = True, hflip: bool = True,
                 max_samples: Optional[int] = None, augment: Augment = "none"):
        super().__init__()
        self.save_hyperparameters()
        self._init_common(batch_size, resolution, val_fraction, test_fraction, split_seed, max_samples)

    def _records(self) -> Tuple[List[Path], np.ndarray, np.ndarray]:
        return scan_utkface(self.hparams.root)


class ImdbWikiDataModule(_FaceDataModule):
    """IMDB-WIKI faces from ``imdb.mat`` / ``wiki.mat`` plus the image folder they index.

    Args:
        mat_path: the ``.mat`` file.
        image_root: folder that ``full_path`` entries are relative to; default: the .mat's folder
            (the layout of the ``imdb_crop`` / ``wiki_crop`` archives).
        db: struct name inside the file, ``imdb`` or ``wiki``.
        min_face_score: keep faces whose (finite) detector score is above this.
        Other arguments: as :class:`UTKFaceDataModule`.
    Entries whose image file is missing are dropped with a warning.
    """

    def __init__(self, mat_path: str = "data/imdb_crop/imdb.mat", image_root: Optional[str] = None,
                 db: Literal["imdb", "wiki"] = "imdb", min_face_score: float = 1.0, batch_size: int = 64,
                 resolution: int = 64, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 split_seed: int = 0, num_workers: int = 0, cache: bool = True, hflip: bool = True,
                 max_samples: Optional[int] = None, augment: Augment = "none"):
        super().__init__()
        self.save_hyperparameters()
        if db not in ("imdb", "wiki"):
            raise UserError(f"db must be 'imdb' or 'wiki', got {db!r}")
        self._init_common(batch_size, resolution, val_fraction, test_fraction, split_seed, max_samples)

    def _records(self) -> Tuple[List[Path], np.ndarray, np.ndarray]:
        hp = self.hparams
        rel, ages, genders = read_imdb_wiki_mat(hp.mat_path, hp.db, hp.min_face_score)
        root = Path(hp.image_root) if hp.image_root is not None else Path(hp.mat_path).parent
        if not root.is_dir():
            raise MissingFileError(f"IMDB-WIKI image folder '{root}' does not exist")
        paths = [root / p for p in rel]
        exists = np.array([p.is_file() for p in paths], dtype=bool)
        if not exists.any():
            raise MissingFileError(f"none of the {len(paths)} images listed in '{hp.mat_path}' exist under '{root}'")
        if not exists.all():
            log.warning("%d of %d IMDB-WIKI images listed in '%s' are missing under '%s'; dropped",
                        int((~exists).sum()), len(paths), hp.mat_path, root)
        keep = np.flatnonzero(exists)
        return [paths[i] for i in keep], ages[keep], genders[keep]
