"""Experiment-B systems: smoke runs, checkpoint round trips, kind checks and metric references."""
import numpy as np
import pytest
import pytorch_lightning as pl
import scipy.linalg
import torch

from configs import load_config
from datamodules.mnist import MNISTDataModule
from evaluation.functional import frechet_distance
from evaluation.metrics import FrechetDistance
from lightning_modules.autoencoder import AutoencoderModule
from lightning_modules.checkpoints import load_module
from lightning_modules.classifier import DigitClassifierModule, random_affine
from lightning_modules.fit import SECTIONS, fit
from lightning_modules.latent_gan import LatentGANModule
from tests.conftest import FAST_TRAINER
from utils.errors import UserError
from utils.runs import resolve_checkpoint


def smoke(module, datamodule):
    trainer = pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(module, datamodule=datamodule)
    return trainer


def fit_tiny(name, idx_dir, tmp_path, *extra):
    overrides = [*FAST_TRAINER, f"out_dir={tmp_path / 'runs'}", "data.source=idx", f"data.root={idx_dir}",
                 "data.batch_size=8", *extra]
    return fit(load_config(name, overrides, sections=SECTIONS))


@pytest.mark.parametrize("module", [AutoencoderModule(train_noise_std=0.3), DigitClassifierModule("small_cnn"),
                                    DigitClassifierModule("judge_cnn")])
def test_fast_dev_run(module, idx_dir):
    before = [p.detach().clone() for p in module.parameters()]
    trainer = smoke(module, MNISTDataModule(source="idx", root=str(idx_dir), batch_size=8))
    assert trainer.state.finished
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))  # it learned something


def test_autoencoder_round_trip_and_shapes(idx_dir, tmp_path):
    run_dir = fit_tiny("autoencoder", idx_dir, tmp_path)
    for name in ("config.yaml", "metrics.csv", "test_metrics.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.*"))
    ae = load_module(str(run_dir), "autoencoder")  # a run folder stands for its best checkpoint
    direct = AutoencoderModule.load_from_checkpoint(resolve_checkpoint(str(run_dir))).eval()
    x = torch.rand(3, 1, 28, 28)
    assert ae.encode(x).shape == (3, 32)
    out = ae(x)
    assert out.shape == (3, 1, 28, 28) and 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(out, direct(x))
    assert not any(p.requires_grad for p in ae.parameters())


def test_wrong_kind_missing_and_corrupt_checkpoints(idx_dir, tmp_path):
    run_dir = fit_tiny("autoencoder", idx_dir, tmp_path)
    with pytest.raises(ValueError, match="holds a 'autoencoder' module, expected 'classifier'"):
        load_module(str(run_dir), "classifier")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_module(str(tmp_path / "nope.ckpt"), "autoencoder")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_module(str(bad), "autoencoder")


def test_latent_gan_trains_on_codes_of_an_ae_checkpoint(idx_dir, tmp_path):
    ae_dir = fit_tiny("autoencoder", idx_dir, tmp_path)
    run_dir = fit_tiny("latent_gan", idx_dir, tmp_path, f"ae_checkpoint={ae_dir}", "module.z_dim=2")
    gan = load_module(str(run_dir), "latent_gan")
    ae = load_module(str(ae_dir), "autoencoder")
    z = gan.sample_z(4)
    assert z.shape == (4, 2)
    codes = gan.generate(z)
    assert codes.shape == (4, 32) and gan.realism(codes).shape == (4,)
    assert ae.decode(codes).shape == (4, 1, 28, 28)
    # the code statistics of the training codes travel in the checkpoint
    assert not torch.allclose(gan.code_std, torch.ones(32))


def test_classifier_round_trip(idx_dir, tmp_path):
    run_dir = fit_tiny("judge", idx_dir, tmp_path)
    judge = load_module(str(run_dir), "classifier")
    assert judge.hparams.arch == "judge_cnn"
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(judge(x), judge(x))  # eval mode: dropout off, deterministic
    assert judge(x).shape == (5, 10)


def test_random_affine_identity_and_motion():
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(random_affine(x, 0.0, 0.0, 0.0), x, atol=1e-5, rtol=0)
    assert not torch.allclose(random_affine(x, 15.0, 0.1, 0.1), x)


def test_frechet_distance_matches_scipy_reference():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 4)), rng.normal(1.0, 2.0, size=(150, 4)) @ rng.normal(size=(4, 4))
    mu1, mu2, c1, c2 = x.mean(0), y.mean(0), np.cov(x.T), np.cov(y.T)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance(torch.tensor(x), torch.tensor(y)).item() == pytest.approx(ref, rel=1e-6)
    metric = FrechetDistance(4)
    for chunk in np.array_split(x, 3):
        metric.update(torch.tensor(chunk, dtype=torch.float32), real=True)
    metric.update(torch.tensor(y, dtype=torch.float32), real=False)
    assert metric.compute().item() == pytest.approx(ref, rel=1e-4)
    assert frechet_distance(torch.tensor(x), torch.tensor(x)).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"N×4 features, got \(2, 3\)"):
        metric.update(torch.zeros(2, 3), real=True)
    with pytest.raises(ValueError, match="equal D"):
        frechet_distance(torch.zeros(5, 2), torch.zeros(5, 3))


def test_module_argument_errors():
    with pytest.raises(ValueError, match="code_dim must be >= 1, got 0"):
        AutoencoderModule(code_dim=0)
    with pytest.raises(ValueError, match="must be >= 1"):
        LatentGANModule(z_dim=0)


def test_resume_continues_the_same_run_and_its_metrics(idx_dir, tmp_path):
    run_dir = fit_tiny("autoencoder", idx_dir, tmp_path)
    rows_before = (run_dir / "metrics.csv").read_text().strip().splitlines()
    again = fit(load_config("autoencoder", [*FAST_TRAINER, "trainer.max_epochs=2", f"resume={run_dir}",
                                            "data.source=idx", f"data.root={idx_dir}", "data.batch_size=8"],
                            sections=SECTIONS))
    assert again == run_dir
    rows_after = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert rows_after[: len(rows_before)] == rows_before and len(rows_after) > len(rows_before)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 4  # 2 epochs of 2 batches
    assert "max_epochs: 2" in (run_dir / "config.yaml").read_text() and (run_dir / "test_metrics.json").is_file()
    same = load_config("autoencoder", [*FAST_TRAINER, "trainer.max_epochs=2", f"resume={run_dir}", "data.source=idx",
                                       f"data.root={idx_dir}", "data.batch_size=8"], sections=SECTIONS)
    with pytest.raises(UserError, match="it finished .* raise trainer.max_epochs"):
        fit(same)
    with pytest.raises(UserError, match=r"different config \(module.lr differ\)"):
        fit({**same, "trainer": {**same["trainer"], "max_epochs": 3}, "module": {**same["module"], "lr": 0.5}})
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        fit(load_config("autoencoder", [f"resume={tmp_path}", f"out_dir={tmp_path}"], sections=SECTIONS))
