"""Experiment B environment: task sets, the batched core, and its gymnasium / Tianshou views."""

import math
import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from tianshou.data import Batch, Collector, VectorReplayBuffer
from torch import nn

from rl.envs import (
    BatchedVectorEnv,
    MnistTaskCore,
    SingleEnv,
    make_dummy_vector_env,
    row_randint,
    task_reward,
)
from rl.tasks import ENCODING_DIM, TaskSet
from tests.conftest import CountingModule, paired_vector_envs

torch.set_num_threads(1)
D, K, POOL = 8, 3, 50


def random_nets(seed: int = 0) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {
        "generator": CountingModule(nn.Linear(K, D)),
        "decoder": CountingModule(nn.Sequential(nn.Linear(D, 784), nn.Sigmoid(),
                                                nn.Unflatten(1, (1, 28, 28)))),
        "reward_classifier": CountingModule(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))),
        "discriminator": CountingModule(nn.Linear(D, 1)),
    }


def make_core(num_envs: int = 4, seed: int = 0, tasks: str = "paper") -> MnistTaskCore:
    gen = torch.Generator().manual_seed(123)
    codes = torch.randn(POOL, D, generator=gen)
    labels = torch.arange(POOL) % 10
    return MnistTaskCore(codes, labels, tasks=TaskSet.parse(tasks), num_envs=num_envs, z_dim=K,
                         seed=seed, **random_nets())


# ---- TaskSet -------------------------------------------------------------------------------
def test_taskset_parses_lists_shorthands_and_presets():
    assert TaskSet.parse("add:0-9").names == [f"+{k}" for k in range(10)]
    assert TaskSet.parse("paper") == TaskSet.parse("add:0-9")
    assert TaskSet.parse("reference").names == ["+1"]
    mixed = TaskSet.parse(["+1", "-3", "*2", "sub:4,6", "mul:7-8", ("add", 0)])
    assert mixed.names == ["+1", "-3", "*2", "-4", "-6", "*7", "*8", "+0"]
    assert len(mixed) == 8
    assert TaskSet.parse(mixed.names) == mixed  # names round-trip through parse


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([], "empty"),
        ("", "cannot parse"),
        (["/2"], "cannot parse task '/2'"),
        (["pow:2"], "unknown op 'pow'"),
        (["+10"], r"operand '10'.*0\.\.9"),
        (["+x"], r"operand 'x'.*0\.\.9"),
        (["add:3-12"], r"operand '12'.*0\.\.9"),
        (["add:5-2"], "empty operand range"),
        ([("+", -1)], r"operand -1.*0\.\.9"),
        (["+1", "add:1"], "duplicate task \\+1"),
    ],
)
def test_taskset_rejects_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        TaskSet.parse(spec)


def test_targets_match_hand_computed_values():
    tasks = TaskSet.parse(["+3", "-4", "*7", "+0"])
    labels = torch.tensor([8, 2, 7, 5, 0, 9, 3])
    ids = torch.tensor([0, 1, 2, 3, 1, 2, 0])
    # 8+3=11->1, 2-4=-2->8, 7*7=49->9, 5+0=5, 0-4=-4->6, 9*7=63->3, 3+3=6
    expected = torch.tensor([1, 8, 9, 5, 6, 3, 6])
    out = tasks.targets(labels, ids)
    assert out.dtype == torch.int64
    assert torch.equal(out, expected)


def test_encode_is_op_then_operand_one_hot():
    tasks = TaskSet.parse(["+3", "-4", "*7"])
    enc = tasks.encode(torch.tensor([2, 0, 1]))
    assert enc.shape == (3, ENCODING_DIM) and enc.dtype == torch.float32
    assert torch.equal(enc.sum(1), torch.full((3,), 2.0))
    assert enc[0, 2] == 1 and enc[0, 3 + 7] == 1  # "*7"
    assert enc[1, 0] == 1 and enc[1, 3 + 3] == 1  # "+3"
    assert enc[2, 1] == 1 and enc[2, 3 + 4] == 1  # "-4"
    with pytest.raises(ValueError, match="integer"):
        tasks.encode(torch.tensor([0.0]))


# ---- reward and core -----------------------------------------------------------------------
class ConstLogits(nn.Module):
    """Logits with class 3 at ln 9 and the rest at 0: p(3) = 9/18 = 0.5, p(other) = 1/18."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(image), 10)
        logits[:, 3] = math.log(9.0)
        return logits + 0.0 * image.flatten(1).sum(1, keepdim=True)


class SumScore(nn.Module):
    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return code.sum(1, keepdim=True)


def test_task_reward_hand_computed():
    logits = torch.tensor([[0.0] * 3 + [math.log(9.0)] + [0.0] * 6] * 2)
    reward = task_reward(logits, torch.tensor([3, 5]), torch.tensor([0.25, 2.0]), 30.0, 3.0)
    # 30*0.5 - 3*(1-0.25) = 12.75 ; 30/18 - 3*relu(1-2) = 1.6667
    torch.testing.assert_close(reward, torch.tensor([12.75, 30.0 / 18.0]))
    # log_prob shape: q = 1 + max(log p, -10)/10 -> p = 0.5: 1 - ln2/10 ; p = 1/18: 1 - ln18/10
    shaped = task_reward(logits, torch.tensor([3, 5]), torch.tensor([0.25, 2.0]), 30.0, 3.0, "log_prob")
    torch.testing.assert_close(shaped, torch.tensor([30 * (1 - math.log(2) / 10) - 2.25, 30 * (1 - math.log(18) / 10)]))
    tiny = torch.tensor([[0.0] + [30.0] * 9])  # p(0) = e^-30/9-ish: below the floor, quality 0
    assert task_reward(tiny, torch.tensor([0]), torch.tensor([1.0]), 30.0, 3.0, "log_prob").item() == 0.0
    with pytest.raises(ValueError, match="reward shape 'logit' invalid"):
        task_reward(logits, torch.tensor([3, 5]), torch.tensor([0.25, 2.0]), shape="logit")


def test_core_step_reward_matches_hand_computation():
    codes = torch.zeros(10, 2)
    labels = torch.arange(10)
    gen = nn.Linear(1, 2)
    with torch.no_grad():  # G(z) = [z, z/2]  ->  D = 1.5 z
        gen.weight.copy_(torch.tensor([[1.0], [0.5]]))
        gen.bias.zero_()
    decoder = nn.Sequential(nn.Linear(2, 784), nn.Unflatten(1, (1, 28, 28)))
    core = MnistTaskCore(codes, labels, gen, decoder, ConstLogits(), SumScore(),
                         TaskSet.parse(["+1"]), num_envs=3, z_dim=1, action_bound=3.0,
                         alpha=30.0, beta=3.0, seed=5)
    core.reset()
    z = torch.tensor([[0.2], [5.0], [-1.0]])  # 5.0 is clipped to 3.0
    obs, reward, term, trunc, info = core.step(z)
    d = torch.tensor([0.3, 4.5, -1.5])
    p = torch.where(info["target"] == 3, torch.tensor(0.5), torch.tensor(1 / 18))
    torch.testing.assert_close(info["d_score"], d)
    torch.testing.assert_close(info["prob"], p)
    torch.testing.assert_close(reward, 30.0 * p - 3.0 * torch.relu(1 - d))
    assert torch.equal(info["target"], (info["label"] + 1) % 10)
    assert term.all() and not trunc.any()
    assert obs.shape == (3, 2 + ENCODING_DIM)


def test_step_runs_each_network_once_per_batch():
    core = make_core(num_envs=16)
    core.reset()
    before = {k: m.calls for k, m in core.nets.items()}
    core.step(torch.zeros(16, K))
    assert {k: m.calls - before[k] for k, m in core.nets.items()} == dict.fromkeys(before, 1)


def test_reset_mask_only_changes_masked_rows():
    core = make_core(num_envs=6, seed=11)
    obs0 = core.reset().clone()
    digits0, tasks0 = core.digit_idx_N.clone(), core.task_ids_N.clone()
    core.step(torch.zeros(6, K))
    mask = torch.tensor([True, False, True, False, False, True])
    obs1 = core.reset(mask)
    assert torch.equal(obs1[~mask], obs0[~mask])
    assert torch.equal(core.digit_idx_N[~mask], digits0[~mask])
    changed = (core.digit_idx_N != digits0) | (core.task_ids_N != tasks0)
    assert changed[mask].all()
    with pytest.raises(RuntimeError, match="before reset"):
        core.step(torch.zeros(6, K))  # rows 1, 3, 4 ended and were not reset
    core.step(torch.zeros(3, K), torch.nonzero(mask)[:, 0])  # the reset rows may step


@pytest.mark.parametrize(("bad", "match"), [(float("nan"), "NaN"), (float("inf"), "inf")])
def test_non_finite_action_raises(bad, match):
    core = make_core(num_envs=2)
    core.reset()
    action = torch.zeros(2, K)
    action[1, 0] = bad
    with pytest.raises(ValueError, match=match):
        core.step(action)
    with pytest.raises(ValueError, match=r"2×3"):
        core.step(torch.zeros(2, K + 1))


def test_constructor_validates_inputs():
    nets = random_nets()
    codes, labels, tasks = torch.randn(5, D), torch.arange(5), TaskSet.parse("paper")
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        MnistTaskCore(codes, labels + 8, tasks=tasks, z_dim=K, **nets)
    with pytest.raises(ValueError, match="generator maps z"):
        MnistTaskCore(torch.randn(5, D + 1), labels, tasks=tasks, z_dim=K, **nets)
    with pytest.raises(ValueError, match="action_bound"):
        MnistTaskCore(codes, labels, tasks=tasks, z_dim=K, action_bound=0.0, **nets)


def test_row_randint_is_uniform_and_keyed_by_seed_and_counter():
    seeds = torch.full((20_000,), 7, dtype=torch.int64)
    counters = torch.arange(20_000)
    draws = row_randint(seeds, counters, 0, 10)
    freq = torch.bincount(draws, minlength=10).float() / len(draws)
    assert (freq - 0.1).abs().max() < 0.01
    assert torch.equal(draws, row_randint(seeds, counters, 0, 10))
    assert not torch.equal(draws, row_randint(seeds + 1, counters, 0, 10))
    assert not torch.equal(draws, row_randint(seeds, counters, 1, 10))


def test_observe_builds_code_and_task_encoding():
    core = make_core()
    codes = torch.randn(3, D)
    obs = core.observe(codes, torch.tensor([0, 4, 9]))
    torch.testing.assert_close(obs[:, :D], (codes - core.codes_ND.mean(0)) / core.codes_ND.std(0))
    assert torch.equal(obs[:, D:], core.tasks.encode(torch.tensor([0, 4, 9])))
    pool_obs = core.observe(core.codes_ND, torch.zeros(len(core.codes_ND), dtype=torch.long))[:, :D]
    torch.testing.assert_close(pool_obs.mean(0), torch.zeros(D), atol=1e-5, rtol=0)  # standardised pool


# ---- views ---------------------------------------------------------------------------------
def test_single_env_passes_check_env():
    env = SingleEnv(make_core(num_envs=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    # by design: z lives in [-3, 3] (docs/experiment-b.md) and AE codes are unbounded; nothing else may warn
    expected = ("symmetric and normalized", "is probably too low", "is probably too high")
    unexpected = [str(w.message) for w in caught if not any(e in str(w.message) for e in expected)]
    assert unexpected == []
    obs_a, _ = env.reset(seed=3)
    obs_b, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs_a, obs_b)
    with pytest.raises(ValueError, match="num_envs=1"):
        SingleEnv(make_core(num_envs=2))


def test_batched_equals_per_env_dummy_vector_env():
    n = 5
    batched, reference = paired_vector_envs(make_core(num_envs=1), n, seed=42)
    rng = np.random.default_rng(0)
    for ids in (np.arange(n), np.arange(n), np.array([1, 3]), np.array([4, 0, 2])):
        action = rng.uniform(-4, 4, size=(len(ids), K)).astype(np.float32)
        out_b, out_r = batched.step(action, ids), reference.step(action, ids)
        np.testing.assert_array_equal(out_b[0], out_r[0])
        np.testing.assert_allclose(out_b[1], out_r[1], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out_b[2], out_r[2])
        for info_b, info_r in zip(out_b[4], out_r[4]):
            assert info_b["env_id"] == info_r["env_id"]
            assert (info_b["target"], info_b["task_id"]) == (info_r["target"], info_r["task_id"])
        reset_b, reset_r = batched.reset(ids)[0], reference.reset(ids)[0]
        np.testing.assert_array_equal(reset_b, reset_r)


def test_batched_equals_dummy_through_tianshou_collector():
    from rl.agents import build_algorithm

    n, seed = 4, 3
    base = make_core(num_envs=1)
    torch.manual_seed(0)
    algo = build_algorithm("td3", base.obs_dim, K, base.action_bound, hidden_sizes=(16,))
    buffers = []
    for venv in (BatchedVectorEnv(base.spawn(n, seed)), make_dummy_vector_env(base.spawn, n, seed)):
        venv.seed(seed)
        collector = Collector(algo, venv, VectorReplayBuffer(64, n))
        collector.reset()
        collector.collect(n_step=8, random=True)  # seeded per-env action spaces
        collector.collect(n_step=8)  # deterministic policy, no exploration noise
        collector.collect(n_episode=6)  # 4 envs, then only 2 of them: subset ids
        buffers.append(collector.buffer)
    got, want = buffers
    assert len(got) == len(want) == 8 + 8 + 6
    idx_b, idx_r = got.sample_indices(0), want.sample_indices(0)  # all stored, same layout
    np.testing.assert_array_equal(idx_b, idx_r)
    data_b, data_r = got[idx_b], want[idx_r]
    np.testing.assert_array_equal(data_b.obs, data_r.obs)
    np.testing.assert_array_equal(data_b.act, data_r.act)
    np.testing.assert_allclose(data_b.rew, data_r.rew, rtol=1e-5, atol=1e-5)
    assert isinstance(data_b.info, Batch) and np.array_equal(data_b.info.target, data_r.info.target)
