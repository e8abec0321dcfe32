"""Experiment A's imitation start (not from the paper): per-face teacher edits and the policy fitted to them,
on a toy world whose best direction differs from face to face."""
import pytest
import torch
from torch import nn

from evaluation.face_age import linear_policy, rollout
from rl.agents import act, build_algorithm
from rl.builders.face_age import FaceAgeFactory
from rl.builders.face_age_imitation import (
    ImitationStart,
    straight_line_states,
    teacher_bases,
    teacher_offsets,
    train_by_imitation,
)
from rl.envs.face_age import FaceAgeCore
from rl.envs.face_age_mdp import AgeMDP
from tests.test_face_age_env import L, FirstChannel, LatentImage, transparent_core
from utils.seeding import seed_everything

MDP = {"direction_every": 1, "inertia": 0.5, "bucket_width": 5.0, "age_min": 0.0, "age_max": 80.0,
       "close_factor": 2.0, "hit_reward": 10.0, "fail_penalty": 20.0, "p1": 100.0, "p2": 200.0, "epsilon": 1000.0}


class TwistedAge(nn.Module):
    """age = 30 + 10·s[0]·sign(s[1]): the face's second coordinate decides which way along e0 ages it, so no
    single direction ages every face and a per-face edit must read the base."""

    def forward(self, img):
        s = img[:, 0, 0, :]
        return 30.0 + 10.0 * s[:, 0] * torch.tanh(4.0 * s[:, 1])


def twisted_core(n: int = 16) -> FaceAgeCore:
    pool = torch.randn(n, L, generator=torch.Generator().manual_seed(0))
    pool[:, 1] = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)  # half the faces age along +e0, half along −e0
    return FaceAgeCore(pool, LatentImage(), TwistedAge(), FirstChannel(), torch.eye(L)[0], AgeMDP(**MDP),
                       num_envs=n, seed=0)


def _ppo(core):
    seed_everything(0)
    return build_algorithm("ppo", core.obs_dim, core.act_dim, core.action_bound, hidden_sizes=[64],
                           init_log_std=-2.0).policy


def test_teacher_moves_each_face_its_own_way_inside_the_ball(tmp_path):
    core = twisted_core()
    cfg = ImitationStart(samples=16, extent=2.0, teacher_steps=60, cache=None)
    base, direction = teacher_bases(core, cfg)
    assert sorted(base.tolist()) == sorted(core.pool_PL.tolist())  # every pool face once (samples = pool)
    offsets = teacher_offsets(core, cfg, base, direction)
    assert (offsets.norm(dim=1) <= 2.0 + 1e-5).all()
    age = lambda z: core.nets["age_model"](LatentImage()(z))  # noqa: E731
    sign = 1.0 - 2.0 * direction.float()
    gain = sign * (age(base + offsets) - age(base))
    along_boundary = sign * (age(base + 2.0 * sign[:, None] * torch.eye(L)[0]) - age(base))
    assert (gain > 10.0).all(), gain  # each face aged its commanded way by more than 1 of 2 units' 20 y
    assert (along_boundary < 0).sum() >= 4  # while the one boundary ages some faces the wrong way


def test_teacher_edits_are_cached_by_what_they_depend_on(tmp_path, monkeypatch):
    core = twisted_core()
    cfg = ImitationStart(samples=8, extent=1.0, teacher_steps=5, cache=str(tmp_path / "teacher"))
    base, direction = teacher_bases(core, cfg)
    first = teacher_offsets(core, cfg, base, direction)
    assert len(list((tmp_path / "teacher").glob("*.pt"))) == 1
    import rl.builders.face_age_imitation as imitation

    monkeypatch.setattr(imitation, "gradient_edits", lambda *a, **k: pytest.fail("cached edits recomputed"))
    torch.testing.assert_close(teacher_offsets(core, cfg, base, direction), first)
    monkeypatch.undo()
    # another age model (here: the plain e0 one) never reads the twisted world's edits
    plain = transparent_core()
    plain.pool_PL = core.pool_PL
    teacher_offsets(plain, cfg, base, direction)
    longer = ImitationStart(samples=8, extent=2.0, teacher_steps=5, cache=str(tmp_path / "teacher"))
    teacher_offsets(core, longer, base, direction)
    assert len(list((tmp_path / "teacher").glob("*.pt"))) == 3


def test_straight_line_states_end_one_step_short_of_the_offset():
    base, offset = torch.zeros(1, 2), torch.tensor([[1.0, 2.0]])
    states = straight_line_states(base, offset, 4)
    torch.testing.assert_close(states[0], torch.tensor([[0.0, 0.0], [0.25, 0.5], [0.5, 1.0], [0.75, 1.5]]))


def test_imitation_fits_per_face_edits_a_single_direction_cannot_make():
    core = twisted_core()
    policy = _ppo(core)
    cfg = ImitationStart(samples=16, extent=2.0, teacher_steps=60, epochs=300, batch_size=16, lr=3e-3, cache=None)
    base, direction = teacher_bases(core, cfg)
    offsets = teacher_offsets(core, cfg, base, direction)
    ids = torch.stack([torch.nonzero((core.pool_PL == b).all(1))[0, 0] for b in base])
    ages = lambda pol: rollout(core, pol, ids, direction, record=True)  # noqa: E731

    def gained(out):  # mean age change in the commanded direction
        return out["age_change"].mean().item()

    log = train_by_imitation(policy, core, cfg, seed=0)
    student = ages(lambda obs: act(policy, obs))
    end = student["z_NTL"][:, -1]
    miss = (end - (base + offsets)).norm(dim=1)
    assert miss.median().item() < 0.05 and miss.max().item() < 0.5, miss  # each face ends near its own teacher's end
    linear = gained(ages(linear_policy(core, 2.0)))  # the same length along the one boundary: half the faces age the wrong way
    assert abs(linear) < 2.0 and gained(student) > 15.0, (linear, gained(student))
    assert log["samples"] == 16 and log["curve"][-1]["loss"] < log["curve"][0]["loss"] / 10


def test_factory_runs_imitation_before_the_gradient_start_and_logs_both():
    core = twisted_core()
    policy = _ppo(core)
    holder = type("A", (), {"policy": policy})()
    from rl.builders.face_age_gradient import GradientStart

    both = FaceAgeFactory(core, core.pool_PL, {}, {}, gradient_start=GradientStart(steps=2, batch_size=2),
                          imitation_start=ImitationStart(samples=4, teacher_steps=2, epochs=2, cache=None))
    out = both.pretrain(holder, seed=0)
    assert out["imitation"]["samples"] == 4 and out["steps"] == 2
    assert FaceAgeFactory(core, core.pool_PL, {}, {}).pretrain(holder, seed=0) is None
