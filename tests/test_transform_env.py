"""Experiment C: shared rewards on hand-computed cases, the goal sampler, the batched env and its views."""
import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch import nn

from configs.schema import TransformRewards
from datamodules.mnist_pairs import GoalSampler
from evaluation.transform import (
    TransformObjective,
    interpolate,
    reference_trajectories,
    score_trajectories,
)
from rl.envs import SingleEnv
from rl.envs.transform import TransformCore
from tests.conftest import CountingModule, paired_vector_envs

LOGSIG = {0.0: math.log(0.5), 2.0: -math.log1p(math.exp(-2.0)), -1.0: -math.log1p(math.e)}


class MeanLogit(nn.Module):
    """A discriminator we can compute by hand: logit = 4 · (mean pixel − 0.5)."""

    def forward(self, image):
        return 4.0 * (image.mean(dim=(1, 2, 3)) - 0.5)


def constant_pool():
    """Four constant images 0, 0.25, 0.5, 1 with labels 0..3."""
    values = torch.tensor([0.0, 0.25, 0.5, 1.0])
    return values.view(4, 1, 1, 1).expand(4, 1, 28, 28).clone(), torch.arange(4), values


def objective_of(discriminator=None, **rewards) -> TransformObjective:
    """The shared rewards over a hand-computable discriminator (``MeanLogit`` unless given)."""
    return TransformObjective(discriminator or MeanLogit(), rewards=TransformRewards(**rewards))


def make_core(num_envs=3, seed=0, **weights):
    images, labels, _ = constant_pool()
    objective = objective_of(CountingModule(MeanLogit()), **{"steps": 2, "distance_weight": 1.0, **weights})
    return TransformCore(images, labels, objective, "other", num_envs=num_envs, seed=seed)


def test_step_reward_by_hand():
    obj = objective_of(realism_weight=2.0, distance_weight=1.5, step_penalty=0.1,
                             max_step_penalty=3.0, steps=2)
    logit, dist = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 4.0])
    first, reached, last = obj.step_reward(logit, dist, 1)
    expected = torch.tensor([2 * LOGSIG[0.0] - 0.1, 2 * LOGSIG[2.0] - 0.1])
    torch.testing.assert_close(first, expected)
    assert not reached.any() and not last.any()
    final, _, last = obj.step_reward(logit, dist, 2)  # the last step adds -1.5·dist and the max-step penalty
    torch.testing.assert_close(final, expected + torch.tensor([-1.5 - 3.0, -6.0 - 3.0]))
    assert last.all()
    early = objective_of(realism_weight=2.0, distance_weight=1.5, step_penalty=0.1,
                               max_step_penalty=3.0, goal_tolerance=2.0, steps=2)
    reward, reached, last = early.step_reward(logit, dist, 1)  # row 0 is within tolerance: ends, no max-step penalty
    torch.testing.assert_close(reward, torch.tensor([expected[0] - 1.5, expected[1]]))
    assert reached.tolist() == [True, False] and last.tolist() == [True, False]
    prob = objective_of(realism_score="prob", steps=2)
    torch.testing.assert_close(prob.step_reward(logit, dist, 1)[0], torch.sigmoid(logit))


def test_trajectory_rewards_and_scores_by_hand():
    obj = objective_of(distance_weight=1.0, steps=2)
    source, goal = torch.zeros(1, 1, 28, 28), torch.ones(1, 1, 28, 28)
    traj = interpolate(source, goal, 2)  # x_1 = 0.5, x_2 = 1
    assert traj[:, 0, 0, 0, 0].tolist() == [0.5, 1.0]
    scores = score_trajectories(traj, goal, obj, judge=MeanLogit())
    # step 1: log σ(0) ; step 2: log σ(2) − 0 (x_2 = goal)
    assert scores["return"].item() == pytest.approx(LOGSIG[0.0] + LOGSIG[2.0], abs=1e-5)
    assert scores["final_l2"].item() == 0.0
    assert scores["realism"].item() == pytest.approx((0.5 + 1 / (1 + math.exp(-2))) / 2, abs=1e-6)
    assert scores["judge_realism"].item() == pytest.approx(scores["realism"].item())
    refs = reference_trajectories(source, goal, 4)
    assert refs["pixel_interp"][:, 0, 0, 0, 0].tolist() == [0.25, 0.5, 0.75, 1.0]


def test_env_rewards_by_hand_and_episode_end():
    core = make_core()
    _, _, values = constant_pool()
    obs = core.reset()
    assert obs.shape == (3, 2 * 784 + 1) and (obs[:, -1] == 0).all()
    torch.testing.assert_close(obs[:, :784], core.images[core.source_idx_N].flatten(1))
    assert (core.labels_N[core.goal_idx_N] != core.labels_N[core.source_idx_N]).all()  # goal_class 'other'
    goal_values = values[core.goal_idx_N]
    calls = core.objective.discriminator.calls
    obs, rew, term, trunc, info = core.step(torch.full((3, 784), 0.5))
    assert core.objective.discriminator.calls == calls + 1  # one batched call per step
    torch.testing.assert_close(rew, torch.full((3,), LOGSIG[0.0]))
    assert not term.any() and not trunc.any() and (obs[:, -1] == 0.5).all()
    obs, rew, term, _, info = core.step(torch.full((3, 784), 0.25))
    dist = 28.0 * (0.25 - goal_values).abs()  # ‖c − g‖₂ over 784 pixels of constant images
    torch.testing.assert_close(info["distance"], dist)
    torch.testing.assert_close(rew, LOGSIG[-1.0] - dist)
    assert term.all()
    with pytest.raises(RuntimeError, match="stepped before reset"):
        core.step(torch.zeros(3, 784))


def test_env_ends_early_within_goal_tolerance():
    core = make_core(num_envs=2, goal_tolerance=0.5, max_step_penalty=10.0)
    core.reset()
    action = torch.stack([core.goals[0].flatten(), torch.zeros(784)])  # row 0 lands on its goal
    _, rew, term, _, info = core.step(action)
    assert term.tolist() == [True, False] and info["reached"].tolist() == [True, False]
    goal_value = core.goals[0].mean().item()  # on the goal: distance 0, reward = log σ(4 · (g − 0.5)) only
    assert info["distance"][0].item() == 0.0
    assert rew[0].item() == pytest.approx(-math.log1p(math.exp(-4 * (goal_value - 0.5))), abs=1e-5)
    _, rew1, term1, _, _ = core.step(torch.zeros(1, 784), torch.tensor([1]))
    assert term1.tolist() == [True] and rew1.item() < -10.0 + LOGSIG[0.0]  # max-step penalty paid


def test_actions_are_clipped_checked_and_detached():
    core = make_core(num_envs=2)
    core.reset()
    action = torch.full((2, 784), 1.5, requires_grad=True)
    obs, *_ = core.step(action * 1.0)
    assert not obs.requires_grad and core.x_N1HW.max() == 1.0  # no gradient crosses into the next step
    obs, *_ = core.step(torch.full((2, 784), -0.2))
    assert obs[:, :784].min() == 0.0
    core.reset()
    with pytest.raises(ValueError, match=r"action must be 2×784"):
        core.step(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="NaN"):
        core.step(torch.full((2, 784), float("nan")))


@pytest.mark.parametrize("goal_class", ["same", "other", "any"])
def test_goal_sampler(goal_class):
    labels = torch.arange(50) % 10
    sampler = GoalSampler(labels, goal_class)
    src = labels.repeat(20)
    rand = torch.randint(0, 1 << 20, (2, len(src)), generator=torch.Generator().manual_seed(0))
    goals = sampler.sample(src, rand[0], rand[1])
    same = labels[goals] == src
    assert same.all() if goal_class == "same" else (~same).all() if goal_class == "other" else same.any() and (~same).any()
    assert len(torch.unique(goals)) > 25


def test_bad_values_give_one_line_errors():
    images, labels, _ = constant_pool()
    cases = [(dict(distance_weight=-1.0), "distance_weight=-1.0 invalid"), (dict(distance="cosine"), "distance='cosine' invalid"),
             (dict(steps=0), "steps=0 invalid"), (dict(distance="ae"), "distance='ae' needs the autoencoder")]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            objective_of(**kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="goal_class='odd' invalid"):
        GoalSampler(labels, "odd")
    with pytest.raises(ValueError, match="needs digits of at least two classes"):
        GoalSampler(torch.zeros(4, dtype=torch.long), "other")


def test_single_env_passes_check_env_and_batched_matches_dummy():
    core = make_core(num_envs=1)
    check_env(SingleEnv(core), skip_render_check=True)
    batched, reference = paired_vector_envs(make_core(num_envs=1), 4, seed=7)
    rng = np.random.default_rng(0)
    for _ in range(4):  # two whole episodes (2 steps each), auto-reset by hand
        action = rng.random((4, 784)).astype(np.float32)
        out_b, out_r = batched.step(action), reference.step(action)
        for a, b in zip(out_b[:4], out_r[:4]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        if out_b[2].all():
            np.testing.assert_array_equal(batched.reset()[0], reference.reset()[0])
