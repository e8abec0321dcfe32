"""The face GAN (experiment A's photo-like generator): trained by lightning_modules.fit on a tiny UTKFace-named
folder, then loaded as an experiment-A generator by path; bad settings fail with one line."""
import csv

import numpy as np
import pytest
import torch

from lightning_modules.checkpoints import load_module
from lightning_modules.fit import main as fit_main
from lightning_modules.nets.generators import GeneratorAdapter, build_generator
from utils.errors import UserError
from tests.conftest import write_utkface_folder
from utils.runs import latest_run

RED = (200, 40, 40)  # the photos' colour


@pytest.fixture
def red_photos(tmp_path):
    """40 UTKFace-named photos of one reddish colour with a little pixel noise."""
    rng = np.random.default_rng(0)
    return write_utkface_folder(tmp_path / "utk", [
        np.clip(np.asarray(RED) + rng.integers(-10, 11, (24, 24, 3)), 0, 255).astype(np.uint8) for _ in range(40)])


def _fit(folder, out, *overrides):
    return fit_main(["face_gan", f"data.root={folder}", f"out_dir={out}", "data.batch_size=8", "module.ngf=8",
                     "module.ndf=8", "trainer.enable_progress_bar=false", *overrides])


def test_a_trained_face_gan_is_an_experiment_a_generator_and_learns_the_photos_colour(red_photos, tmp_path):
    torch.manual_seed(0)
    assert _fit(red_photos, tmp_path / "runs", "trainer.max_epochs=12", "module.lr=0.002") == 0
    run = latest_run(tmp_path / "runs" / "face_gan")
    with open(run / "metrics.csv", newline="") as f:
        fd = [float(row["val/fd"]) for row in csv.DictReader(f) if row["val/fd"]]
    assert len(fd) == 12 and fd[-1] < 0.7 * fd[0], fd  # the faces' pooled colours moved towards the photos'

    for name in (str(tmp_path / "runs" / "face_gan"), str(run), str(run / "checkpoints" / "last.ckpt")):
        gen = build_generator(name)
        assert isinstance(gen, GeneratorAdapter) and (gen.latent_dim, gen.resolution) == (100, 64)
    z = gen.sample(16, torch.Generator().manual_seed(1))
    images = gen(z)
    assert images.shape == (16, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert torch.equal(images, gen(z))  # frozen, eval mode: the same latent is the same face
    assert not any(p.requires_grad for p in gen.parameters())
    r, g, b = images.mean((0, 2, 3)).tolist()
    assert r - max(g, b) > 0.2, (r, g, b)  # reddish like the photos (an untrained G's faces are grey)
    module = load_module(str(run), "face_gan")
    assert torch.equal(module(z), images)


def test_bad_face_gan_settings_and_paths_fail_with_one_line(red_photos, tmp_path, capsys):
    assert _fit(red_photos, tmp_path / "runs", "data.resolution=32") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert any("data.resolution=32" in line and "64" in line for line in err), err
    assert not list((tmp_path / "runs").glob("face_gan/*/checkpoints/*.ckpt"))

    assert _fit(red_photos, tmp_path / "runs", "module.real_label=0.3") != 0
    assert "real_label=0.3" in capsys.readouterr().err

    with pytest.raises(UserError, match="nothing_here"):
        build_generator(str(tmp_path / "nothing_here"))
    age = tmp_path / "age.ckpt"
    from tests.test_join import _saved
    from lightning_modules.face_attributes import AgeRegressorModule
    _saved(AgeRegressorModule(backbone="small", input_size=32), age)
    with pytest.raises(UserError, match="holds a 'age_regressor' module, expected 'face_gan'"):
        build_generator(str(age))
    with pytest.raises(UserError, match="dcgan_digifce"):
        build_generator("dcgan_digifce")


def test_a_face_gan_run_trained_further_continues_from_its_last_epoch(red_photos, tmp_path):
    """Two epochs, then two more by resume, count as four epochs in one go: both Adam states come back (their step
    counts run on). The weights are not bitwise the same: the noise drawn after a resume starts from the seed."""
    torch.manual_seed(0)
    assert _fit(red_photos, tmp_path / "once", "trainer.max_epochs=4", "seed=3") == 0
    assert _fit(red_photos, tmp_path / "twice", "trainer.max_epochs=2", "seed=3") == 0
    run = latest_run(tmp_path / "twice" / "face_gan")
    assert fit_main([f"resume={run}", "trainer.max_epochs=4"]) == 0
    assert latest_run(tmp_path / "twice" / "face_gan") == run  # the same folder, trained further
    once = torch.load(latest_run(tmp_path / "once" / "face_gan") / "checkpoints" / "last.ckpt", weights_only=True)
    twice = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert once["epoch"] == twice["epoch"] == 3 and once["global_step"] == twice["global_step"]
    steps = [[float(o["state"][0]["step"]) for o in ckpt["optimizer_states"]] for ckpt in (once, twice)]
    assert steps[0] == steps[1] == [4 * 4.0, 4 * 4.0], steps  # 4 epochs × 4 batches of 8 (of 32 training photos)
