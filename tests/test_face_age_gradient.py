"""Experiment A's gradient-trained policy (not from the paper): the smooth eq. 9 and its training, on the toy world."""
import pytest
import torch

from evaluation.face_age import linear_policy, rollout
from rl.agents import act, build_algorithm
from rl.builders.face_age import FaceAgeFactory
from rl.builders.face_age_gradient import GradientStart, surrogate_returns, train_by_gradient
from tests.test_face_age_env import L, transparent_core
from utils.seeding import seed_everything

WIDE = {"p1": 100.0, "p2": 200.0, "epsilon": 1000.0}  # neither identity nor the typical set ends an episode


def _ppo(core, **hp):
    seed_everything(0)
    return build_algorithm("ppo", core.obs_dim, core.act_dim, core.action_bound, hidden_sizes=[16], **hp).policy


def test_surrogate_of_a_linear_traversal_is_its_eq9_return():
    # age = 30 + 10·s[0], boundary e0: 3 units in 10 steps ages 3 y (0.6 bucket) a step, 6 buckets in all
    core = transparent_core(num_envs=2, **WIDE)
    ids, direction = torch.tensor([0, 0]), torch.tensor([0, 1])
    true = rollout(core, linear_policy(core, 3.0), ids, direction)["return"]
    surrogate = surrogate_returns(core, linear_policy(core, 3.0), core.pool_PL[ids], direction)
    assert true[0].item() == 6 * 20.0 - 4  # m·r per bucket, −1 for each of the 4 steps without one
    assert surrogate[0].item() == pytest.approx(true[0].item(), abs=0.05)
    # descending: the 6 buckets below the base are all there is; the surrogate caps its progress there
    assert surrogate[1].item() == pytest.approx(6 * 20.0 - 4, abs=0.05)
    # standing still gains nothing and pays −1 a step
    still = surrogate_returns(core, lambda obs: torch.zeros(len(obs), core.act_dim), core.pool_PL[ids], direction)
    torch.testing.assert_close(still, torch.full((2,), -10.0), atol=0.01, rtol=0)  # soft failure terms: ~1e-4 a step


def test_surrogate_with_a_goal_pays_its_buckets_only():
    # goal_buckets 2: the 3-unit traversal gains 0.6 bucket a step and reaches both at step 4, where the episode
    # ends (no −1 for the steps after it), as the env's: hits at steps 2 and 4, −1 at steps 1 and 3
    core = transparent_core(num_envs=1, goal_buckets=2, **WIDE)
    true = rollout(core, linear_policy(core, 3.0), torch.tensor([0]), torch.tensor([0]))
    ret = surrogate_returns(core, linear_policy(core, 3.0), core.pool_PL[:1], torch.tensor([0]))
    assert true["return"].item() == 38.0 and true["steps"].item() == 4
    assert ret.item() == pytest.approx(3 * (0.6 * 20 - 0.4) + (0.2 * 20 - 0.8), abs=0.05)


def test_surrogate_pays_for_identity_and_fails_beyond_p2():
    core = transparent_core(num_envs=1, p1=1.0, p2=5.0, epsilon=1000.0)
    base, up = core.pool_PL[:1], torch.tensor([0])
    true = lambda extent: rollout(core, linear_policy(core, extent), torch.tensor([0]), up)["return"].item()  # noqa: E731
    # 8 units: 1.6 buckets a step (one paid), I_g = (0.8·t)² passes P1 at step 2 and P2 = 5 at step 3: 20 + 10 − 20
    far = surrogate_returns(core, linear_policy(core, 8.0), base, up, softness=0.01)
    assert true(8.0) == 10.0 and far.item() == pytest.approx(10.0, abs=0.1)
    # 2 units: 0.4 bucket a step, I_g passes P1 half-way; eq. 9 pays 54 in whole buckets, the surrogate ≈ 52
    near = surrogate_returns(core, linear_policy(core, 2.0), base, up, softness=0.01)
    assert true(2.0) == 54.0 and near.item() == pytest.approx(52.0, abs=1.0)
    cost = transparent_core(num_envs=1, p1=1.0, p2=5.0, epsilon=1000.0, identity_cost=1.0)
    linear = surrogate_returns(cost, linear_policy(cost, 2.0), base, up, softness=0.01).item()
    assert linear < near.item()
    # identity_power 2: this edit's I_g ends well above P1, so the squared term charges more than the linear one
    squared = transparent_core(num_envs=1, p1=1.0, p2=5.0, epsilon=1000.0, identity_cost=1.0, identity_power=2.0)
    assert surrogate_returns(squared, linear_policy(squared, 2.0), base, up, softness=0.01).item() < linear - 1.0


def test_identity_stop_in_the_rollout_and_the_surrogate():
    # 8 units: 0.8 of s[0] a step, I_g = (0.8·t)²: 0.64 after the first step, 2.56 after the second
    up, base = torch.tensor([0]), torch.tensor([0])
    core = transparent_core(num_envs=1, p1=1.0, p2=5.0, epsilon=1000.0, identity_stop=2.0)
    out = rollout(core, linear_policy(core, 8.0), base, up, record=True)
    assert out["steps"].item() == 1 and out["valid_NT"][0].tolist() == [True] + [False] * 9
    assert out["return"].item() == 20.0 and out["age_change"].item() == pytest.approx(8.0)
    torch.testing.assert_close(out["z_NTL"][0, -1], out["z_NTL"][0, 0])  # the result: the last face taken
    # the surrogate stops where the env does: 20, where without the stop the step past P2 fails (20 + 10 − 20)
    ret = surrogate_returns(core, linear_policy(core, 8.0), core.pool_PL[:1], up, softness=0.01)
    assert ret.item() == pytest.approx(20.0, abs=0.1)
    # a first step beyond the stop: the episode is one step at the base face, unedited
    first = transparent_core(num_envs=1, p1=1.0, p2=5.0, epsilon=1000.0, identity_stop=0.5)
    out = rollout(first, linear_policy(first, 8.0), base, up, record=True)
    assert out["steps"].item() == 1 and out["valid_NT"][0, 0] and out["age_change"].item() == 0.0
    assert out["identity_mean"].item() == 0.0 and out["return"].item() == 0.0
    torch.testing.assert_close(out["z_NTL"][0, 0], first.pool_PL[0])


def test_training_by_gradient_raises_the_true_return_from_standing_still():
    core = transparent_core(num_envs=4, **WIDE)
    policy = _ppo(core, init_mean=[0.0] * (L + 2), init_log_std=-2.0)  # starts standing still
    ids, direction = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 1, 0, 1])
    before = rollout(core, lambda obs: act(policy, obs), ids, direction)["return"].mean().item()
    out = train_by_gradient(policy, core, GradientStart(steps=60, batch_size=4, lr=3e-3), seed=0)
    after = rollout(core, lambda obs: act(policy, obs), ids, direction)["return"].mean().item()
    assert before == pytest.approx(-10.0) and after > before + 30.0, (before, after)
    assert out["curve"][-1]["surrogate_return"] > out["curve"][0]["surrogate_return"]
    assert out["curve"][0]["step"] == 1 and out["curve"][-1]["step"] == 60


def test_factory_pretrains_only_when_asked():
    core = transparent_core(num_envs=2, **WIDE)
    policy = _ppo(core)
    weights = [p.detach().clone() for p in policy.parameters()]
    off = FaceAgeFactory(core, core.pool_PL, {}, {})
    assert off.pretrain(type("A", (), {"policy": policy})(), seed=0) is None
    assert all(torch.equal(a, b) for a, b in zip(weights, policy.parameters()))
    on = FaceAgeFactory(core, core.pool_PL, {}, {}, gradient_start=GradientStart(steps=2, batch_size=2))
    assert on.pretrain(type("A", (), {"policy": policy})(), seed=0)["steps"] == 2
    assert not all(torch.equal(a, b) for a, b in zip(weights, policy.parameters()))


def _female(img):  # toy gender model: p_female = σ(s[1] − 2), 0.5 at the base latent
    return torch.sigmoid(img[:, 0, 0, 1] - 2.0)


def test_gender_cost_charges_only_moves_that_change_the_gender_model():
    from tests.test_face_age_env import act as action

    core = transparent_core(num_envs=1, **WIDE)
    base, up = core.pool_PL[:1], torch.tensor([0])
    ages = linear_policy(core, 3.0)  # along e0: ages, leaves s[1] (the toy gender) alone
    plain = surrogate_returns(core, ages, base, up)
    assert surrogate_returns(core, ages, base, up, gender=_female, gender_cost=5.0).item() == pytest.approx(plain.item())
    sideways = lambda obs: action(w2=0.3, k_gen=torch.eye(L)[1]).expand(len(obs), -1)  # noqa: E731  along e1
    free = surrogate_returns(core, sideways, base, up).item()
    costs = [free - surrogate_returns(core, sideways, base, up, gender=_female, gender_cost=g).item() for g in (5.0, 10.0)]
    assert costs[0] > 0.5 and costs[1] == pytest.approx(2 * costs[0], rel=1e-4)  # −g·|Δp_female| each step
    with pytest.raises(ValueError, match="gender_cost=5.0 needs env.gender_checkpoint"):
        surrogate_returns(core, ages, base, up, gender_cost=5.0)


def test_gender_cost_needs_a_gender_model_before_anything_loads(tmp_path):
    from rl.builders.face_age import face_age

    with pytest.raises(ValueError, match=r"env.gradient_start.gender_cost=2.0 needs env.gender_checkpoint"):
        face_age(age_checkpoint=str(tmp_path / "absent"), gradient_start={"steps": 5, "gender_cost": 2.0})
    core = transparent_core(num_envs=2, **WIDE)
    policy = _ppo(core)
    on = FaceAgeFactory(core, core.pool_PL, {}, {}, gradient_start=GradientStart(steps=2, batch_size=2, gender_cost=1.0),
                        gender_model=_female)
    assert on.pretrain(type("A", (), {"policy": policy})(), seed=0)["steps"] == 2
