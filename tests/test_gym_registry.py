"""The three envs through gymnasium's registry: ``gymnasium.make("latentnav/<Name>-v0", ...)`` passes check_env."""
import importlib.util

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rl  # noqa: F401 - importing rl registers the envs
from tests.conftest import FAST_TRAINER, make_idx_folder


def _checked(env_id: str, **kwargs) -> gymnasium.Env:
    env = gymnasium.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    obs2, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert np.isfinite(reward) and env.observation_space.shape == obs2.shape
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, again)  # reset(seed=) restarts the row's stream
    return env


def test_all_three_ids_are_registered():
    assert {"latentnav/MnistTask-v0", "latentnav/FaceAge-v0", "latentnav/Transform-v0"} <= set(gymnasium.registry)
    with pytest.raises(KeyError, match="unknown environment 'nope'"):
        rl.registration.make_single_env("nope")


def test_mnist_task_from_the_registry(mnist_stage_runs):
    runs = mnist_stage_runs
    env = _checked("latentnav/MnistTask-v0", ae_checkpoint=str(runs["autoencoder"]),
                   gan_checkpoint=str(runs["latent_gan"]), classifier_checkpoint=str(runs["classifier"]),
                   source="idx", root=str(runs["idx"]), tasks=["+1", "-2"])
    assert env.action_space.shape == (5,) and env.observation_space.shape == (32 + 13,)


def test_transform_from_the_registry(tmp_path):
    from configs import load_config
    from lightning_modules.fit import SECTIONS, fit

    idx = make_idx_folder(tmp_path / "idx", n_train=48, n_test=8)
    common = [*FAST_TRAINER, f"out_dir={tmp_path / 'runs'}", "data.source=idx", f"data.root={idx}", "data.batch_size=8"]
    disc = fit(load_config("realism_discriminator", [*common, "module.width=2"], sections=SECTIONS))
    env = _checked("latentnav/Transform-v0", discriminator_checkpoint=str(disc), source="idx", root=str(idx),
                   rewards={"steps": 2})
    assert env.action_space.shape == (784,) and env.observation_space.shape == (2 * 784 + 1,)


@pytest.mark.skipif(importlib.util.find_spec("gan_face_generate") is None,
                    reason="gan-face-generate (the offline DCGAN weights) is not installed")
def test_face_age_from_the_registry(tmp_path):
    import torch

    from lightning_modules.face_attributes import AgeRegressorModule
    from tests.test_compare_interfacegan import _checkpoint

    torch.manual_seed(0)
    age = _checkpoint(AgeRegressorModule(backbone="small", input_size=32), tmp_path / "age.ckpt")
    env = _checked("latentnav/FaceAge-v0", age_checkpoint=str(age), boundary_samples=200, boundary_ratio=0.05,
                   train_pool=20, eval_pool=4, calibration_samples=16, mdp={"episode_len": 3})
    assert env.action_space.shape == (102,) and env.observation_space.shape == (202,)
