"""Experiment A environment: the MDP's pure functions, the batched core, its views, a PPO smoke run."""

import math

import pytest
import torch
from torch import nn

from rl.envs.face_age import (
    AgeMDP,
    FaceAgeCore,
    age_reward,
    bucket_hits,
    bucket_index,
    default_epsilon,
    direction_buckets,
    identity_distance,
    num_buckets,
    transition,
    typical_set,
)

L = 8
THRESHOLDS = {"p1": 1.0, "p2": 4.0}


# ---- transparent networks: image = latent, age = 30 + 10·s[0], I_g = ‖s − s_base‖² ----------
class LatentImage(nn.Module):
    def forward(self, z):
        return z[:, None, None, :].expand(-1, 3, 1, -1)


class AgeFromFirstPixel(nn.Module):
    def forward(self, img):
        return 30.0 + 10.0 * img[:, 0, 0, 0]


class FirstChannel(nn.Module):
    def forward(self, img):
        return img[:, 0, 0, :]


def base_latent() -> torch.Tensor:
    """‖s‖² = 8 = L: the centre of the typical set; age 30 (bucket [30, 35))."""
    return torch.tensor([[0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]])


def transparent_core(num_envs: int = 1, **mdp) -> FaceAgeCore:
    settings = {"direction_every": 1, "inertia": 0.5, "bucket_width": 5.0, "age_min": 0.0,
                "age_max": 80.0, "close_factor": 2.0, "hit_reward": 10.0, "fail_penalty": 20.0,
                **THRESHOLDS, **mdp}
    # direction_every=1 and seed 0: row 0 ascends in its first episode, descends in its second
    return FaceAgeCore(base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(),
                       torch.eye(L)[0], AgeMDP(**settings), num_envs=num_envs, seed=0)


def act(w1: float = 0.0, w2: float = 0.0, k_gen=None) -> torch.Tensor:
    k = torch.zeros(L) if k_gen is None else torch.as_tensor(k_gen, dtype=torch.float32)
    return torch.cat([k, torch.tensor([w1, w2])])[None, :]


# ---- pure functions -------------------------------------------------------------------------
def test_transition_eq2_hand_computed():
    s = torch.tensor([[1.0, 2.0]])
    out = transition(s, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([2.0]),
                     torch.tensor([-1.0]), inertia=0.25)
    # 0.25·[1, 2] + 0.75·([1, 2] + 2·[1, 0] − [0, 1]) = [0.25, 0.5] + [2.25, 0.75]
    torch.testing.assert_close(out, torch.tensor([[2.5, 1.25]]))
    torch.testing.assert_close(transition(s, s, s, torch.ones(1), torch.ones(1), 0.0), 3 * s)


def test_typical_set_eq5_and_default_epsilon():
    s = torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]])  # ½|2 − ‖s‖²| = 0, 3, 1
    assert typical_set(s, 3.0).tolist() == [True, True, True]
    assert typical_set(s, 2.9).tolist() == [True, False, True]
    assert typical_set(s, 0.5).tolist() == [True, False, False]
    assert default_epsilon(100) == pytest.approx(1.5 * math.sqrt(200))  # 3 std of ½‖z‖²
    z = torch.randn(20_000, 100, generator=torch.Generator().manual_seed(0))
    inside = typical_set(z, default_epsilon(100)).float().mean()
    assert 0.99 < inside < 1.0  # N(0, I) samples are (almost all) typical


def test_reward_eq9_every_branch():
    identity = torch.tensor([0.5, 1.0, 2.0, 4.0, 2.0, 5.0, 0.5, 0.5])
    hit = torch.tensor([True, True, True, True, False, True, False, True])
    typical = torch.tensor([True, True, True, True, True, True, True, False])
    reward, failed = age_reward(identity, hit, typical, p1=1.0, p2=4.0, m=2.0, r=10.0, n=20.0)
    # m·r (I ≤ P1), m·r (I = P1), r, r (I = P2), −1 (no hit), −n (I > P2), −1, −n (not typical)
    assert reward.tolist() == [20.0, 20.0, 10.0, 10.0, -1.0, -20.0, -1.0, -20.0]
    assert failed.tolist() == [False] * 5 + [True, False, True]
    graded, again = age_reward(identity, hit, typical, p1=1.0, p2=4.0, m=2.0, r=10.0, n=20.0, identity_cost=3.0)
    # every step that does not fail pays 3·I_g/P1 more, below P1 too; failures stay −n
    assert graded.tolist() == [18.5, 17.0, 4.0, -2.0, -7.0, -20.0, -2.5, -20.0] and torch.equal(again, failed)
    squared, _ = age_reward(identity, hit, typical, p1=1.0, p2=4.0, m=2.0, r=10.0, n=20.0, identity_cost=3.0,
                            identity_power=2.0)
    # identity_power 2: 3·(I_g/P1)², less than the linear term below P1, more above it
    assert squared.tolist() == [19.25, 17.0, -2.0, -38.0, -13.0, -20.0, -1.75, -20.0]


def test_identity_distance_eq8():
    feat = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    base = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert identity_distance(feat, base).tolist() == [5.0, 25.0]


def test_bucket_bookkeeping_eq7():
    assert num_buckets(0.0, 80.0, 5.0) == 16 and num_buckets(0.0, 81.0, 5.0) == 17
    assert bucket_index(torch.tensor([-3.0, 0.0, 4.99, 5.0, 79.0, 200.0]), 0.0, 5.0, 16).tolist() == \
        [0, 0, 0, 1, 15, 15]  # out-of-range ages fall in the edge buckets
    visited = torch.zeros(3, 16, dtype=torch.bool)
    visited[:, 6] = True  # base bucket [30, 35) visited at reset
    base, asc = torch.full((3,), 31.0), torch.tensor([0, 0, 1])
    hit, visited = bucket_hits(torch.tensor([36.0, 33.0, 36.0]), base, asc, visited, 0.0, 5.0)
    # new bucket beyond base → 1; beyond base but in the (visited) base bucket → 0; wrong direction → 0
    assert hit.tolist() == [True, False, False]
    assert visited[0, 7] and visited[2, 7]  # marked whatever the direction
    hit, visited = bucket_hits(torch.tensor([38.0, 26.0, 26.0]), base, asc, visited, 0.0, 5.0)
    assert hit.tolist() == [False, False, True]  # same bucket again → 0; descending row: new lower bucket → 1
    assert direction_buckets(torch.tensor([2, 2]), torch.tensor([0, 1]), 5).tolist() == \
        [[False, False, False, True, True], [True, True, False, False, False]]
    # a goal mask: a fresh bucket beyond the base outside the goal is no hit (bucket 8 with goal [7])
    goal = torch.zeros(3, 16, dtype=torch.bool)
    goal[:, 7] = True
    hit, _ = bucket_hits(torch.tensor([42.0, 36.0, 36.0]), base, asc, torch.zeros(3, 16, dtype=torch.bool), 0.0, 5.0,
                         goal)
    assert hit.tolist() == [False, True, False]
    # goal_buckets K: only the K nearest buckets beyond the base (fewer at the edge of the range)
    assert direction_buckets(torch.tensor([1, 1, 3]), torch.tensor([0, 1, 1]), 5, goal=2).tolist() == \
        [[False, False, True, True, False], [True, False, False, False, False], [False, True, True, False, False]]


# ---- the core on transparent networks ----------------------------------------------------------
def test_core_step_hand_computed_and_bucket_hits():
    core = transparent_core()
    obs = core.reset()
    assert obs.shape == (1, 2 * L + 2) and core.direction_N.tolist() == [0]
    torch.testing.assert_close(obs[0], torch.cat([base_latent()[0], base_latent()[0], torch.tensor([1.0, 0.0])]))
    obs, rew, term, trunc, info = core.step(act(w1=1.0))  # s[0] = 0.5·1 → age 35, I = 0.25
    torch.testing.assert_close(obs[0, :L], torch.tensor([0.5, 2, 2, 0, 0, 0, 0, 0]))
    torch.testing.assert_close(obs[0, L:], torch.cat([base_latent()[0], torch.tensor([1.0, 0.0])]))
    assert info["age"].item() == pytest.approx(35.0) and info["age_base"].item() == pytest.approx(30.0)
    assert info["identity"].item() == pytest.approx(0.25) and info["hit"].item()
    assert rew.item() == 20.0 and not term.item() and not trunc.item()  # m·r: I ≤ P1
    _, rew, *_, info = core.step(act())  # same bucket again
    assert rew.item() == -1.0 and not info["hit"].item()
    _, rew, *_, info = core.step(act(w1=2.0, w2=1.0, k_gen=[0, 0, 0, 5, 0, 0, 0, 0]))
    # k_gen rescaled to e3: s = [1.5, 2, 2, 0.5, 0...], age 45, I = 1.5² + 0.5² = 2.5 → r
    assert info["age"].item() == pytest.approx(45.0) and info["identity"].item() == pytest.approx(2.5)
    assert rew.item() == 10.0 and info["in_typical_set"].item()


def test_goal_buckets_pay_only_the_nearest_and_end_the_episode():
    core = transparent_core(goal_buckets=2)  # ascending from age 30: the goal is buckets [35, 40) and [40, 45)
    core.reset()
    _, rew, term, *_ = core.step(act(w1=1.0))  # s[0] = 0.5, age 35: the first goal bucket
    assert rew.item() == 20.0 and not term.item()
    _, rew, term, _, info = core.step(act(w1=2.0))  # s[0] = 1.5, age 45: a new bucket, but past the goal
    assert info["age"].item() == pytest.approx(45.0) and not info["hit"].item()
    assert rew.item() == -1.0 and not term.item()
    _, rew, term, _, info = core.step(act(w1=-1.0))  # s[0] = 1.0, age 40, I = 1 = P1: the goal's last bucket
    assert info["hit"].item() and rew.item() == 20.0 and term.item()
    free = transparent_core()  # every bucket beyond the base pays: the same jump to 45 is a hit
    free.reset()
    free.step(act(w1=1.0))
    assert free.step(act(w1=2.0))[1].item() == 10.0  # r: I = 2.25 > P1


def test_identity_stop_refuses_the_step_and_ends_the_episode_on_the_previous_face():
    core = transparent_core(identity_stop=2.0)  # P1 = 1: a step to a face with I_g > 2 is refused
    core.reset()
    _, rew, term, _, info = core.step(act(w1=1.0))  # s[0] = 0.5, age 35, I = 0.25: taken
    assert rew.item() == 20.0 and not term.item() and not info["stopped"].item()
    obs, rew, term, trunc, info = core.step(act(w1=2.0))  # s[0] would be 1.5, I = 2.25 > 2: refused
    torch.testing.assert_close(obs[0, :L], torch.tensor([0.5, 2, 2, 0, 0, 0, 0, 0]))
    assert info["stopped"].item() and term.item() and not trunc.item() and rew.item() == 0.0
    assert info["age"].item() == pytest.approx(35.0) and info["identity"].item() == pytest.approx(0.25)
    assert not info["hit"].item() and info["in_typical_set"].item()
    plain = transparent_core()  # without the stop the same step is taken: age 45, a new bucket with P1 < I_g < P2
    plain.reset()
    plain.step(act(w1=1.0))
    _, rew, term, _, info = plain.step(act(w1=2.0))
    assert info["age"].item() == pytest.approx(45.0) and not info["stopped"].item() and rew.item() == 10.0
    assert not term.item()


def test_descending_episode_moves_against_the_boundary():
    core = transparent_core(episode_len=1)
    core.reset()
    core.step(act())  # first episode ascends; truncated after 1 step
    core.reset()
    assert core.direction_N.tolist() == [1]
    _, rew, term, trunc, info = core.step(act(w1=2.0))  # k_hyp = −boundary: s[0] = −1 → age 20
    assert info["age"].item() == pytest.approx(20.0) and info["hit"].item() and rew.item() == 20.0
    assert info["direction"].item() == 1 and trunc.item() and not term.item()


@pytest.mark.parametrize(("signed_gen", "age"), [(False, 40.0), (True, 20.0)])
def test_signed_gen_flips_the_learned_direction_with_the_command(signed_gen, age):
    core = transparent_core(episode_len=1, signed_gen=signed_gen)
    core.reset()
    core.step(act())
    core.reset()  # descending: with signed_gen, k_gen = +e0 means "younger" as k_hyp does
    _, _, _, _, info = core.step(act(w2=2.0, k_gen=torch.eye(L)[0]))
    assert info["direction"].item() == 1 and info["age"].item() == pytest.approx(age)


def test_episode_ends_when_all_buckets_visited():
    core = transparent_core(age_min=20.0, age_max=40.0)  # buckets 20/25/30/35: only [35, 40] lies above
    core.reset()
    _, rew, term, trunc, _ = core.step(act(w1=2.0))  # age 40 → last bucket, I = 1 = P1 → m·r
    assert rew.item() == 20.0 and term.item() and not trunc.item()
    with pytest.raises(RuntimeError, match="before reset"):
        core.step(act())


def test_episode_truncates_after_episode_len():
    core = transparent_core(episode_len=3)
    core.reset()
    flags = [core.step(act())[2:4] for _ in range(3)]
    assert [(bool(t), bool(tr)) for t, tr in flags] == [(False, False), (False, False), (False, True)]


def test_leaving_typical_set_or_identity_ends_with_penalty():
    core = transparent_core(epsilon=1.0, p2=100.0)  # typical: ‖s‖² in [6, 10]
    core.reset()
    _, rew, term, *_ = core.step(act(w1=2.0))  # ‖s‖² = 9
    assert rew.item() == 20.0 and not term.item()
    _, rew, term, _, info = core.step(act(w1=2.0))  # ‖s‖² = 12
    assert rew.item() == -20.0 and term.item() and not info["in_typical_set"].item()
    core = transparent_core(p1=0.1, p2=0.5)
    core.reset()
    _, rew, term, _, info = core.step(act(w1=2.0))  # I = 1 > P2
    assert rew.item() == -20.0 and term.item() and info["in_typical_set"].item()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p1": 4.0, "p2": 4.0}, "expected P1 < P2"),
        ({"inertia": 1.0}, r"inertia=1.0 invalid: expected T in \[0, 1\)"),
        ({"epsilon": 0.0}, r"epsilon=0.0 invalid: expected ε > 0"),
        ({"bucket_width": -5.0}, r"bucket_width=-5.0 invalid: expected β > 0"),
        ({"episode_len": 0}, "episode_len=0 invalid"),
        ({"age_max": 0.0}, "age_max=0.0 invalid"),
        ({"hit_reward": float("nan")}, "hit_reward=nan invalid"),
        ({"identity_cost": -1.0}, r"identity_cost=-1.0 invalid: expected a finite number >= 0"),
        ({"identity_power": 0.5}, r"identity_power=0.5 invalid: expected a finite power >= 1"),
        ({"goal_buckets": 0}, r"goal_buckets=0 invalid: expected an int >= 1 or None"),
        ({"goal_buckets": 2.5}, r"goal_buckets=2.5 invalid: expected an int >= 1 or None"),
        ({"identity_stop": 0.0}, r"identity_stop=0.0 invalid: expected a multiple of P1 > 0 or None"),
        ({"identity_stop": 4.0}, r"identity_stop=4.0 invalid: expected below P2/P1 = 4"),
        ({"p1": None}, r"p1=None invalid: expected a finite identity distance >= 0 or 'auto'"),
        ({"p1": "auto"}, "the face core needs an AgeMDP with numbers for p1 and p2"),
    ],
)
def test_mdp_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        transparent_core(**kwargs)


def test_core_input_validation():
    with pytest.raises(ValueError, match="outside the typical set"):
        FaceAgeCore(3 * base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(), torch.eye(L)[0],
                    AgeMDP(**THRESHOLDS))
    with pytest.raises(ValueError, match="boundary_L must be a finite non-zero vector of length 8"):
        FaceAgeCore(base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(), torch.ones(7), AgeMDP(**THRESHOLDS))
    with pytest.raises(ValueError, match="one age per image"):
        FaceAgeCore(base_latent(), LatentImage(), FirstChannel(), FirstChannel(), torch.eye(L)[0], AgeMDP(**THRESHOLDS))
    with pytest.raises(ValueError, match="numbers for p1 and p2"):
        FaceAgeCore(base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(), torch.eye(L)[0], AgeMDP())
    core = transparent_core(num_envs=2)
    core.reset()
    for bad, match in ((float("nan"), "NaN"), (float("inf"), "inf")):
        action = torch.zeros(2, L + 2)
        action[1, 3] = bad
        with pytest.raises(ValueError, match=match):
            core.step(action)
    with pytest.raises(ValueError, match=r"2×10"):
        core.step(torch.zeros(2, L))
    _, _, _, _, info = core.step(torch.full((2, L + 2), 50.0))  # clipped to the box [-2, 2]
    # w1 = w2 = 2, k_gen = unit (1, …, 1)/√8; T = 0.5; row 1 (seed 1) starts descending
    along_gen = 0.5 * 2.0 / math.sqrt(8)
    assert info["age"].tolist() == pytest.approx([30 + 10 * (1 + along_gen), 30 + 10 * (-1 + along_gen)])


def test_kept_direction_takes_its_part_out_of_every_move():
    kept = torch.zeros(L)
    kept[[0, 1]] = 1.0  # e0 + e1: the boundary (e0) has a part along it
    core = FaceAgeCore(base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(), torch.eye(L)[0],
                       AgeMDP(inertia=0.5, direction_every=1, **THRESHOLDS), seed=0, kept_KL=kept)
    core.reset()  # ascending
    obs, *_, info = core.step(act(w1=2.0, w2=1.0, k_gen=torch.eye(L)[2]))
    # unkept move 0.5·(2·e0 + e2) = (1, 0, 0.5); minus its part along (e0 + e1)/√2: (0.5, −0.5, 0.5)
    torch.testing.assert_close(obs[0, :L], torch.tensor([0.5, 1.5, 2.5, 0, 0, 0, 0, 0]))
    assert info["age"].item() == pytest.approx(35.0)
    assert (obs[0, :L] - base_latent()[0]) @ kept == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(core.spawn(1, seed=0).kept_KL, core.kept_KL)  # kept by spawn (and .to)
    with pytest.raises(ValueError, match="kept_KL must be linearly independent finite directions of length 8"):
        FaceAgeCore(base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(), torch.eye(L)[0],
                    AgeMDP(**THRESHOLDS), kept_KL=torch.stack([kept, 2 * kept]))
    with pytest.raises(ValueError, match="of length 8, got shape \\(1, 7\\)"):
        FaceAgeCore(base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(), torch.eye(L)[0],
                    AgeMDP(**THRESHOLDS), kept_KL=torch.ones(7))


def test_keep_gender_needs_a_gender_model_before_anything_loads(tmp_path):
    from rl.builders.face_age import face_age

    with pytest.raises(ValueError, match=r"^env.keep_gender=true needs env.gender_checkpoint"):
        face_age(age_checkpoint=str(tmp_path / "absent"), keep_gender=True)


# ---- random tiny networks: views, seeding, batching, training ----------------------------------


def test_a_core_measuring_in_one_pass_steps_exactly_like_separate_models():
    class Both(torch.nn.Module):  # (A_reg, F) of the transparent world from one call
        def forward(self, img):
            return AgeFromFirstPixel()(img), FirstChannel()(img)

    settings = {"direction_every": 1, **THRESHOLDS}
    plain = FaceAgeCore(base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(), torch.eye(L)[0],
                        AgeMDP(**settings), num_envs=2, seed=0)
    joint = FaceAgeCore(base_latent(), LatentImage(), AgeFromFirstPixel(), FirstChannel(), torch.eye(L)[0],
                        AgeMDP(**settings), num_envs=2, seed=0, age_and_features=Both())
    assert "age_and_features" in joint.spawn(1, seed=0).nets  # kept by spawn (and .to)
    assert torch.equal(plain.reset(), joint.reset())
    for _ in range(2):
        step = act(w1=1.0, w2=0.5, k_gen=torch.ones(L)).repeat(2, 1)
        *a, info_a = plain.step(step)
        *b, info_b = joint.step(step)
        assert all(torch.equal(x, y) for x, y in zip(a, b)) and info_a.keys() == info_b.keys()
        assert all(torch.equal(info_a[k], info_b[k]) for k in info_a)
