"""Face datamodules on tiny synthetic data: UTKFace names, IMDB-WIKI .mat parsing, splits, errors."""
import datetime
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from datamodules.faces import (
    FEMALE,
    MALE,
    UNKNOWN_GENDER,
    ImdbWikiDataModule,
    UTKFaceDataModule,
    imdb_wiki_age,
    parse_utkface_name,
    read_imdb_wiki_mat,
    scan_utkface,
)

MALFORMED = ["61_1_20170109142408075.jpg.chip.jpg", "14_0_0_2017011022340900.jpg.chip.jpg"]


def write_jpeg(path, rgb=None, size=24, seed=0):
    if rgb is None:
        arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    else:
        arr = np.tile(np.asarray(rgb, np.uint8), (size, size, 1))
    Image.fromarray(arr).save(path, quality=95)


@pytest.fixture
def utk_dir(tmp_path):
    """12 well-named faces (ages 10..65, alternating gender), 2 malformed names, one non-image."""
    folder = tmp_path / "utk"
    folder.mkdir()
    for i in range(12):
        suffix = ".jpg.chip.jpg" if i % 3 else ".jpg"
        write_jpeg(folder / f"{10 + 5 * i}_{i % 2}_{i % 5}_2017010915055{i:04d}{suffix}", seed=i)
    for name in MALFORMED:
        write_jpeg(folder / name)
    (folder / "README.txt").write_text("not an image")
    return folder


def test_parse_utkface_name():
    assert parse_utkface_name("26_1_3_20170117154021523.jpg.chip.jpg") == (26, 1, 3)
    assert parse_utkface_name("100_0_0_20170112213303693.jpg") == (100, 0, 0)
    for bad in MALFORMED + ["26_2_0_20170117154021523.jpg", "x_1_0_20170117154021523.jpg", "26_1_0.jpg"]:
        assert parse_utkface_name(bad) is None, bad


def test_scan_skips_malformed_with_warning(utk_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="datamodules.faces"):
        paths, ages, genders = scan_utkface(str(utk_dir))
    assert len(paths) == 12
    assert ages.dtype == np.float32 and genders.dtype == np.int64
    by_name = {p.name: (a, g) for p, a, g in zip(paths, ages, genders)}
    assert by_name["15_1_1_20170109150550001.jpg.chip.jpg"] == (15.0, 1)
    assert sorted(ages.tolist()) == [10.0 + 5 * i for i in range(12)]
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "skipped 2 file(s)" in warned and all(name in warned for name in MALFORMED)
    assert "README" not in warned  # non-images are ignored silently


def test_utkface_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_utkface(str(tmp_path / "nope"))
    write_jpeg(tmp_path / MALFORMED[0])
    with pytest.raises(ValueError, match="no usable UTKFace images.*1 malformed"):
        UTKFaceDataModule(root=str(tmp_path)).setup("fit")
    with pytest.raises(ValueError, match="val_fraction=0.6 and test_fraction=0.5"):
        UTKFaceDataModule(root=str(tmp_path), val_fraction=0.6, test_fraction=0.5)


def test_utkface_batches(utk_dir):
    dm = UTKFaceDataModule(root=str(utk_dir), batch_size=4, resolution=16, val_fraction=0.25, test_fraction=0.25)
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 6, "val": 3, "test": 3}
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert batch["age"].dtype == torch.float32 and batch["gender"].dtype == torch.int64
    # the labels travel with their image: index back into the split
    val = dm.splits["val"]
    for i in range(len(val)):
        idx = int(val.indices[i])
        name = val.paths[idx].name
        assert val[i]["age"].item() == float(name.split("_")[0])
        assert val[i]["gender"].item() == int(name.split("_")[1])
    all_idx = torch.cat([dm.splits[s].indices for s in ("train", "val", "test")])
    assert sorted(all_idx.tolist()) == list(range(12))  # disjoint, complete


def test_pixels_map_to_minus_one_one(tmp_path):
    write_jpeg(tmp_path / "30_0_0_20170109150550001.jpg", rgb=(255, 0, 128), size=40)
    dm = UTKFaceDataModule(root=str(tmp_path), resolution=8, val_fraction=0, test_fraction=0, hflip=False)
    dm.setup()
    img = dm.splits["train"][0]["image"]
    assert img.shape == (3, 8, 8)
    means = img.mean(dim=(1, 2))
    assert means[0] > 0.97 and means[1] < -0.97 and abs(means[2]) < 0.03


def test_split_determinism(utk_dir):
    def split(seed):
        dm = UTKFaceDataModule(root=str(utk_dir), split_seed=seed, cache=False)
        dm.setup()
        return {k: [v.paths[int(i)].name for i in v.indices] for k, v in dm.splits.items()}

    assert split(0) == split(0)
    assert split(0) != split(1)


def test_max_samples_takes_a_seeded_subset(utk_dir):
    full = UTKFaceDataModule(root=str(utk_dir), val_fraction=0.25, test_fraction=0.25, cache=False)
    part = UTKFaceDataModule(root=str(utk_dir), val_fraction=0.25, test_fraction=0.25, max_samples=8)
    full.setup()
    part.setup()
    assert {k: len(v) for k, v in part.splits.items()} == {"train": 4, "val": 2, "test": 2}
    assert part._cache.shape == (8, 3, 64, 64)  # only the faces in use are decoded
    assert part.splits["val"].paths == full.splits["val"].paths[:8]  # a prefix of the same permutation
    with pytest.raises(ValueError, match="max_samples must be positive"):
        UTKFaceDataModule(root=str(utk_dir), max_samples=0)


def test_cache_matches_lazy_decoding_and_hflip_only_on_train(utk_dir):
    kw = dict(root=str(utk_dir), resolution=16, val_fraction=0.25, test_fraction=0.25)
    cached, lazy = UTKFaceDataModule(cache=True, hflip=False, **kw), UTKFaceDataModule(cache=False, hflip=False, **kw)
    flipped = UTKFaceDataModule(cache=True, hflip=True, **kw)
    for dm in (cached, lazy, flipped):
        dm.setup()
    assert cached._cache is not None and lazy._cache is None
    for i in range(len(cached.splits["train"])):
        assert torch.equal(cached.splits["train"][i]["image"], lazy.splits["train"][i]["image"])
        assert torch.equal(flipped.splits["val"][i % 3]["image"], cached.splits["val"][i % 3]["image"])
    torch.manual_seed(0)
    outs = [flipped.splits["train"][0]["image"] for _ in range(20)]
    plain = cached.splits["train"][0]["image"]
    assert any(torch.equal(o, plain.flip(-1)) for o in outs) and any(torch.equal(o, plain) for o in outs)


def test_domain_augmentation_changes_train_images_only_and_stays_in_range(utk_dir):
    kw = dict(root=str(utk_dir), resolution=16, val_fraction=0.25, test_fraction=0.25, hflip=False)
    plain, aug = UTKFaceDataModule(**kw), UTKFaceDataModule(augment="domain", **kw)
    plain.setup()
    aug.setup()
    torch.manual_seed(0)
    outs = [aug.splits["train"][0]["image"] for _ in range(4)]
    assert all(o.shape == (3, 16, 16) and o.min() >= -1 and o.max() <= 1 for o in outs)
    assert not any(torch.equal(o, plain.splits["train"][0]["image"]) for o in outs)
    assert not torch.equal(outs[0], outs[1])  # drawn afresh each time
    assert torch.equal(aug.splits["val"][0]["image"], plain.splits["val"][0]["image"])  # never on val / test
    assert aug.splits["train"][0]["age"] == plain.splits["train"][0]["age"]
    with pytest.raises(ValueError, match="augment='strong' invalid: expected 'none' or 'domain'"):
        UTKFaceDataModule(augment="strong", **kw)


def datenum(d: datetime.date) -> float:
    return d.toordinal() + 366 + 0.25  # MATLAB datenum (+ a time of day, ignored)


MAT_ROWS = [  # (birth date, photo year, gender, face_score, second_face_score, kept?, age)
    (datetime.date(1980, 3, 15), 2000, 1.0, 4.5, np.nan, True, 20),     # male -> 0
    (datetime.date(1980, 9, 10), 2000, 0.0, 2.0, np.nan, True, 19),     # born after 1 July
    (datetime.date(1980, 7, 1), 2000, np.nan, 3.0, np.nan, True, 20),   # unknown gender kept
    (datetime.date(1970, 1, 1), 2000, 1.0, -np.inf, np.nan, False, 30),  # no face
    (datetime.date(1970, 1, 1), 2000, 1.0, 0.5, np.nan, False, 30),     # score below threshold
    (datetime.date(1970, 1, 1), 2000, 1.0, 3.0, 1.7, False, 30),        # a second face
    (datetime.date(1890, 1, 1), 2000, 0.0, 3.0, np.nan, False, 110),    # age > 100
    (datetime.date(2001, 1, 1), 2000, 0.0, 3.0, np.nan, False, -1),     # photo before birth
]


def write_mat(path, db="imdb", rows=MAT_ROWS, drop=()):
    n = len(rows)
    cells = np.empty((1, n), dtype=object)
    for i in range(n):
        cells[0, i] = np.array([f"{i:02d}/face_{i}.jpg"])
    fields = {
        "dob": np.array([[datenum(r[0]) for r in rows]]),
        "photo_taken": np.array([[r[1] for r in rows]], dtype=np.uint16),
        "full_path": cells,
        "gender": np.array([[r[2] for r in rows]]),
        "face_score": np.array([[r[3] for r in rows]]),
        "second_face_score": np.array([[r[4] for r in rows]]),
    }
    savemat(path, {db: {k: v for k, v in fields.items() if k not in drop}})


def test_imdb_wiki_age_hand_values():
    dob = np.array([datenum(r[0]) for r in MAT_ROWS])
    assert imdb_wiki_age(dob, np.array([r[1] for r in MAT_ROWS])).tolist() == [r[6] for r in MAT_ROWS]
    assert np.isnan(imdb_wiki_age(np.array([np.nan, 12.0]), np.array([2000, 2000]))).all()


def test_read_mat_filters_and_gender_convention(tmp_path):
    write_mat(tmp_path / "wiki.mat", db="wiki")
    paths, ages, genders = read_imdb_wiki_mat(str(tmp_path / "wiki.mat"), "wiki", min_face_score=1.0)
    assert paths == ["00/face_0.jpg", "01/face_1.jpg", "02/face_2.jpg"]
    assert ages.tolist() == [20.0, 19.0, 20.0]
    assert genders.tolist() == [MALE, FEMALE, UNKNOWN_GENDER] == [0, 1, -1]
    # a lower threshold lets the 0.5-score face in
    assert len(read_imdb_wiki_mat(str(tmp_path / "wiki.mat"), "wiki", min_face_score=0.0)[0]) == 4


def test_mat_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_imdb_wiki_mat(str(tmp_path / "none.mat"), "imdb")
    write_mat(tmp_path / "imdb.mat")
    with pytest.raises(ValueError, match=r"no 'wiki' struct; top-level keys: \['imdb'\]"):
        read_imdb_wiki_mat(str(tmp_path / "imdb.mat"), "wiki")
    write_mat(tmp_path / "bad.mat", drop=("face_score",))
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['face_score'\]"):
        read_imdb_wiki_mat(str(tmp_path / "bad.mat"), "imdb")
    write_mat(tmp_path / "empty.mat", rows=MAT_ROWS[3:])
    with pytest.raises(ValueError, match="no usable entries"):
        read_imdb_wiki_mat(str(tmp_path / "empty.mat"), "imdb")
    with pytest.raises(ValueError, match="db must be 'imdb' or 'wiki'"):
        ImdbWikiDataModule(mat_path=str(tmp_path / "imdb.mat"), db="celeba")
    with pytest.raises(FileNotFoundError, match="none of the 3 images"):
        ImdbWikiDataModule(mat_path=str(tmp_path / "imdb.mat")).setup()


def test_imdb_wiki_datamodule(tmp_path, caplog):
    write_mat(tmp_path / "imdb.mat")
    for i in (0, 1):  # face 2 is missing on disk: dropped with a warning
        (tmp_path / f"{i:02d}").mkdir()
        write_jpeg(tmp_path / f"{i:02d}" / f"face_{i}.jpg", seed=i)
    dm = ImdbWikiDataModule(mat_path=str(tmp_path / "imdb.mat"), resolution=8, batch_size=8,
                            val_fraction=0, test_fraction=0)
    with caplog.at_level(logging.WARNING, logger="datamodules.faces"):
        dm.setup()
    assert "1 of 3 IMDB-WIKI images" in caplog.text
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 8, 8)
    assert sorted(zip(batch["age"].tolist(), batch["gender"].tolist())) == [(19.0, FEMALE), (20.0, MALE)]
