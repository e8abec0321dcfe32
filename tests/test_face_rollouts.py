"""Experiment A rollouts: linear traversal and policy episodes on the transparent toy world."""
import pytest
import torch

from evaluation.face_age import linear_policy, rollout, summarize
from tests.test_face_age_env import transparent_core

WIDE = {"p1": 100.0, "p2": 200.0, "episode_len": 10}  # identity never ends these episodes


def test_linear_traversal_hand_computed():
    # age = 30 + 10·s[0], boundary = e0, 3 units in 10 steps: 3 years a step from age 30
    core = transparent_core(num_envs=2, **WIDE)
    out = rollout(core, linear_policy(core, 3.0), torch.tensor([0, 0]), torch.tensor([0, 1]))
    # ascending: ages 33..60 -> new buckets 35, 40, 45, 50, 55, 60
    # descending: ages 27..3 -> buckets 25..0; all six below the base are visited at step 9: episode ends
    assert out["buckets"].tolist() == [6.0, 6.0]
    assert out["steps"].tolist() == [10.0, 9.0]
    assert out["return"].tolist() == [6 * 20.0 - 4, 6 * 20.0 - 3]  # m·r a hit (I_g <= P1), -1 a step without
    torch.testing.assert_close(out["age_change"], torch.tensor([30.0, 27.0]))
    torch.testing.assert_close(out["identity_max"], torch.tensor([3.0 ** 2, 2.7 ** 2]), rtol=1e-5, atol=1e-5)
    ks = torch.arange(1, 11, dtype=torch.float32)
    assert out["identity_mean"][0].item() == pytest.approx(((0.3 * ks) ** 2).mean().item(), rel=1e-5)
    assert not out["left_typical"].any()


def test_standing_still_reaches_nothing_and_summary_means():
    core = transparent_core(num_envs=2, **WIDE)
    still = rollout(core, lambda obs: torch.zeros(len(obs), core.act_dim), torch.tensor([0, 0]), torch.tensor([0, 1]))
    summary = summarize(still)
    assert summary["buckets"] == 0.0 and summary["age_change"] == 0.0 and summary["steps"] == 10.0
    assert summary["left_typical_rate"] == 0.0


def test_linear_step_beyond_the_action_box_is_refused():
    core = transparent_core(**WIDE)
    with pytest.raises(ValueError, match=r"extent 50 needs w1=10.00 per step, outside \[0, action bound 2\]"):
        linear_policy(core, 50.0)
    with pytest.raises(ValueError, match=r"extent -1 needs w1=-0.20 per step, outside \[0, action bound 2\]"):
        linear_policy(core, -1.0)


def test_speed_measurement_times_every_network_of_the_core():
    from benchmarks.speed import measure_env
    from tests.test_face_age_batched import random_core

    base = random_core(num_envs=1)
    result = measure_env(base.spawn, num_envs=4, steps=3, dummy_steps=2)
    assert result["num_envs"] == 4 and result["batched_steps_per_s"] > 0 and result["dummy_steps_per_s"] > 0
    assert set(result["share_per_network"]) == {"generator", "age_model", "features"}
    assert 0 < sum(result["share_per_network"].values()) <= 1.0
    assert result["overhead_ratio"] >= 1.0


def test_trajectory_strip_shows_base_then_each_step(tmp_path):
    import numpy as np
    from PIL import Image

    from evaluation.face_age import trajectory_strip

    core = transparent_core(num_envs=2, **WIDE)
    path = trajectory_strip(core, torch.tensor([0, 0]), torch.tensor([0, 1]), linear_policy(core, 3.0),
                            tmp_path / "strips" / "epoch_002.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    # tiles are 1×8 pixels (the toy generator), padding 1: 11 columns (base + 10 steps), 2 rows
    assert img.shape == (2 * 2 + 1, 11 * 9 + 1, 3)
    first_pixel = lambda row, col: int(img[1 + 2 * row, 1 + 9 * col, 0])  # noqa: E731 - s[0] mapped to [0, 1]
    # ascending row: s[0] = 0.3·t after t steps, shown as (s + 1) / 2
    for t in (0, 1, 3):
        assert abs(first_pixel(0, t) - 255 * (0.3 * t + 1) / 2) <= 1.0
    # descending row: ended after 9 steps (all buckets below visited), the last face is repeated
    assert first_pixel(1, 1) < first_pixel(1, 0) and first_pixel(1, 10) == first_pixel(1, 9)


def test_strip_hook_writes_every_n_epochs_and_only_for_face_envs(tmp_path):
    from types import SimpleNamespace

    from rl.agents import build_algorithm
    from rl.train import _strip_hook

    core = transparent_core(num_envs=1, **WIDE)
    factory = SimpleNamespace(eval_pool_PL=core.pool_PL, eval_core=lambda n, seed: core.spawn(n, seed))
    algo = build_algorithm("ppo", core.obs_dim, core.act_dim, core.action_bound, hidden_sizes=(8,))
    hook = _strip_hook(factory, tmp_path, every=2)
    for epoch in (1, 2, 3, 4):
        hook(algo, epoch)
    assert sorted(p.name for p in (tmp_path / "strips").iterdir()) == ["epoch_002.png", "epoch_004.png"]
    assert _strip_hook(factory, tmp_path, every=0) is None
    assert _strip_hook(lambda n, seed: core, tmp_path, every=2) is None  # no evaluation pool: no strips
    with pytest.raises(ValueError, match=r"strip_every=-1 invalid"):
        _strip_hook(factory, tmp_path, every=-1)


def test_versus_linear_needs_more_buckets_at_lower_mean_and_max_identity():
    from evaluation.face_age import versus_linear

    line = lambda b, mean, mx: {"buckets": b, "identity_mean": mean, "identity_max": mx}  # noqa: E731
    results = {"linear_2": line(2.1, 24.0, 54.0), "linear_3": line(2.9, 43.0, 92.0), "linear_4": line(3.5, 62.0, 127.0)}
    better = versus_linear({**results, "rl": line(3.0, 40.0, 80.0)})
    assert better["dominated"] == ["linear_3"] and better["beats_linear"]
    # idling first and moving late lowers the mean I_g only: the edit is as far as linear_3's
    idle = versus_linear({**results, "rl": line(3.0, 30.0, 92.5)})
    assert idle["dominated"] == [] and not idle["beats_linear"]


def test_compare_matches_a_linear_policy_to_its_own_extent():
    from types import SimpleNamespace

    from evaluation.face_age import compare, table_lines

    core = transparent_core(num_envs=1, **WIDE)
    factory = SimpleNamespace(eval_pool_PL=core.pool_PL, eval_core=lambda n, seed: core.spawn(n, seed))
    out = compare(factory, linear_policy(core, 2.3), [1.0, 2.0, 3.0, 4.0])
    # the bisection finds the traversal that edits as far (max I_g = 2.3² ascending) and scores it the same
    assert out["linear_matched"]["extent"] == pytest.approx(2.3, abs=0.04)
    assert out["linear_matched"]["buckets_diff"] == {"mean": 0.0, "stderr": 0.0}
    assert out["versus_linear"]["matched"]["buckets_diff"] == {"mean": 0.0, "stderr": 0.0}
    assert out["rl"]["identity_max"] == pytest.approx(out["linear_matched"]["identity_max"], rel=0.04)
    assert out["versus_linear"]["dominated"] == [] and out["episodes"] == {"bases": 1, "directions": 2, "episode_len": 10}
    out["gradient_direction"] = {"cosine_to_k_hyp": {0: 1.0, 1: 1.0}, "direction_2": out["linear_2"]}
    names = [line.split(":")[0].strip() for line in table_lines(out)]
    assert names == ["rl", "linear_1", "linear_2", "linear_3", "linear_4", "linear_matched", "gradient_direction_2"]


def test_gradient_direction_turns_an_off_boundary_toward_the_age_axis():
    from types import SimpleNamespace

    from evaluation.face_age import direction_curve, gradient_direction
    from rl.envs.face_age import AgeMDP, FaceAgeCore
    from tests.test_face_age_env import (
        AgeFromFirstPixel,
        FirstChannel,
        L,
        LatentImage,
        base_latent,
    )

    # age = 30 + 10·s[0] and I_g = the squared move: e0 is the best direction; start 45° off it
    off = torch.nn.functional.normalize(torch.eye(L)[0] + torch.eye(L)[1], dim=0)
    core = FaceAgeCore(base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(), off, AgeMDP(**WIDE),
                       num_envs=1)
    up, down = gradient_direction(core, 0, iters=100, lr=0.05), gradient_direction(core, 1, iters=100, lr=0.05)
    assert up[0].item() > 0.95 and down[0].item() < -0.95  # older along +e0, younger along −e0
    factory = SimpleNamespace(eval_pool_PL=core.pool_PL, base=core)
    curve = direction_curve(factory, {0: up, 1: down}, [2.0])["direction_2"]
    boundary = summarize(rollout(core.spawn(2, 0), linear_policy(core, 2.0), torch.tensor([0, 0]), torch.tensor([0, 1])))
    # same move length, so the same identity distance, but more age and buckets along the fitted directions
    assert curve["identity_max"] == pytest.approx(boundary["identity_max"], rel=1e-4)
    assert curve["age_change"] > boundary["age_change"] + 4.0 and curve["buckets"] > boundary["buckets"]
