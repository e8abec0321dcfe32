"""The agent table: builders, short TD3 / PPO / SAC runs through the one training loop, saving and acting."""

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rl.loop
from configs.schema import RLLoopConfig
from rl.agents import (
    AGENTS,
    POLICY_FILE,
    act,
    build_algorithm,
    load_policy,
    save_policy,
)
from rl.envs import BatchedVectorEnv, MnistTaskCore, make_dummy_vector_env
from rl.loop import TRAIN_STATE_FILE, load_train_state, train
from rl.tasks import TaskSet
from utils.seeding import seed_everything

torch.set_num_threads(1)
D, K, BOUND = 8, 3, 3.0


def make_core(num_envs: int, seed: int) -> MnistTaskCore:
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(D, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    codes, labels = torch.randn(40, D), torch.arange(40) % 10
    return MnistTaskCore(codes, labels, nn.Linear(K, D), decoder, classifier, nn.Linear(D, 1),
                         TaskSet.parse(["+1", "-2", "*3"]), num_envs=num_envs, z_dim=K,
                         action_bound=BOUND, seed=seed)


def test_builders_use_reference_hyperparameters_and_validate():
    seed_everything(0)
    td3 = build_algorithm("td3", 20, K, BOUND)
    assert (td3.tau, td3.gamma, td3.policy_noise, td3.noise_clip, td3.update_actor_freq) == (
        0.005, 0.99, 0.2, 0.5, 2)
    assert td3.policy.exploration_noise._sigma == 0.3
    hidden = [m.out_features for m in td3.policy.actor.modules() if isinstance(m, nn.Linear)]
    assert hidden == [256, 256, K]
    assert td3.latentnav_spec["hparams"]["actor_lr"] == 1e-3
    ppo = build_algorithm("PPO", 20, K, BOUND, hidden_sizes=(32,))
    assert torch.allclose(ppo.policy.actor.sigma_param, torch.full((K, 1), -1.0))
    assert ppo.policy.deterministic_eval
    with pytest.raises(KeyError, match=r"unknown agent 'a2c'; expected one of \['ppo', 'sac', 'td3', 'transform_pg'\]"):
        build_algorithm("a2c", 20, K, BOUND)  # a name not in the table is an error, never another agent
    with pytest.raises(KeyError, match="unknown td3 hyper-parameter.*'lr'"):
        build_algorithm("td3", 20, K, BOUND, lr=1e-3)
    with pytest.raises(ValueError, match="action_bound"):
        build_algorithm("td3", 20, K, 0.0)
    assert set(AGENTS) == {"td3", "ppo", "sac", "transform_pg"}
    sac = build_algorithm("sac", 20, K, BOUND, hidden_sizes=(16,), alpha=0.1)
    assert (sac.tau, sac.gamma) == (0.005, 0.99) and sac.latentnav_spec["hparams"]["alpha"] == 0.1


def test_act_is_deterministic_bounded_and_noise_free():
    seed_everything(1)
    algo = build_algorithm("td3", 20, K, BOUND, hidden_sizes=(16,), exploration_noise=0.5)
    obs = torch.randn(64, 20) * 10
    a1, a2 = act(algo, obs), act(algo.policy, obs)
    assert a1.shape == (64, K) and torch.equal(a1, a2)
    assert a1.abs().max() <= BOUND
    raw = algo.policy.actor(obs)[0].detach()  # tanh output in [-1, 1] scaled to the box
    torch.testing.assert_close(a1, raw * BOUND)
    ppo = build_algorithm("ppo", 20, K, BOUND, hidden_sizes=(16,))
    (mean, _), _ = ppo.policy.actor(obs)
    torch.testing.assert_close(act(ppo, obs), mean.detach().clamp(-1, 1) * BOUND)


LOG_STD = {  # the per-entry log std a policy of each agent acts with, as a (states, K) tensor
    "ppo": lambda policy, obs: policy.actor.sigma_param.flatten().expand(len(obs), K),  # one for every state
    "sac": lambda policy, obs: policy.actor(obs)[0][1].log(),  # the head's output, per state
}


@pytest.mark.parametrize("name", sorted(LOG_STD))
def test_warm_start_mean_and_per_entry_log_std_in_every_state(tmp_path, name):
    seed_everything(2)
    mean, log_std = [1.5, -0.6, 0.0], [-3.0, -2.0, -1.0]
    algo = build_algorithm(name, 20, K, BOUND, hidden_sizes=(16,), init_mean=mean, init_log_std=log_std)
    obs = torch.randn(64, 20) * 10
    # every state starts at the same mean action (the head is shrunk ×0.01, its bias set to atanh)
    torch.testing.assert_close(act(algo, obs), torch.tensor(mean).expand(64, K), atol=0.05, rtol=0)
    torch.testing.assert_close(LOG_STD[name](algo.policy, obs), torch.tensor(log_std).expand(64, K), atol=0.05, rtol=0)
    # the saved policy rebuilds with its trained weights, not the warm start
    with torch.no_grad():
        for weight in algo.policy.actor.parameters():
            weight.add_(0.1)
    assert (act(algo, obs) - torch.tensor(mean)).abs().max() > 0.05  # training moved it off the warm start
    loaded = load_policy(save_policy(algo, tmp_path / POLICY_FILE))
    torch.testing.assert_close(act(loaded, obs), act(algo, obs))
    torch.testing.assert_close(LOG_STD[name](loaded, obs), LOG_STD[name](algo.policy, obs))
    default = build_algorithm(name, 20, K, BOUND, hidden_sizes=(16,))
    assert act(default, obs).std(0).min() > 0.05  # without init_mean the mean depends on the state
    with pytest.raises(ValueError, match=r"init_mean must lie strictly inside the action box \(-3, 3\), got an entry of 3"):
        build_algorithm(name, 20, K, BOUND, init_mean=[3.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"init_log_std must be a finite number or 3 of them.*got 2"):
        build_algorithm(name, 20, K, BOUND, init_log_std=[-1.0, -1.0])


def test_sac_actor_delay_trains_the_critics_alone_first():
    from tianshou.data import Batch

    seed_everything(4)
    sac = build_algorithm("sac", 20, K, BOUND, hidden_sizes=(16,), init_mean=[1.0, 0.0, -1.0], actor_delay=2)
    obs, action, returns = torch.randn(32, 20), torch.rand(32, K) * 2 - 1, torch.randn(32, 1)

    def batch():
        return Batch(obs=obs, act=action, returns=returns, info={})

    def snapshot(net):
        return [w.detach().clone() for w in net.parameters()]

    def same(before, net):
        return all(torch.equal(a, b) for a, b in zip(before, net.parameters()))

    actor, critic = snapshot(sac.policy.actor), snapshot(sac.critic)
    for _ in range(2):
        stats = sac._update_with_batch(batch())
    assert same(actor, sac.policy.actor) and not same(critic, sac.critic) and stats.actor_loss == 0.0
    assert rl.loop._algorithm_counters(sac)["_critic_only_updates"] == 2  # saved with a training state
    sac._update_with_batch(batch())
    assert not same(actor, sac.policy.actor)
    with pytest.raises(ValueError, match=r"agent.actor_delay=-1 invalid: expected gradient steps >= 0"):
        build_algorithm("sac", 20, K, BOUND, actor_delay=-1)


def test_every_table_entry_is_consistent():
    # the spec's on/off-policy flag agrees with the algorithm it builds; act() works on a fresh policy
    from tianshou.algorithm.algorithm_base import OffPolicyAlgorithm

    for name, spec in AGENTS.items():
        if name == "transform_pg":
            continue  # its env has image observations: tested in test_transform_agents.py
        seed_everything(0)
        algo = build_algorithm(name, 20, K, BOUND, hidden_sizes=(8,))
        assert isinstance(algo, OffPolicyAlgorithm) == spec.off_policy, name
        assert act(algo, torch.randn(5, 20)).shape == (5, K)


OFF_POLICY = {"warmup_steps": 64, "batch_size": 32, "update_per_step": 0.5}
ON_POLICY = {"collect_steps": 64, "batch_size": 32, "repeat": 2}


@pytest.mark.parametrize(("target", "alpha_rises"), [(None, True), (-50.0, False)])
def test_sac_auto_alpha_tunes_towards_the_given_target_entropy(target, alpha_rises):
    """A start with log std -4 in K = 3 entries has an entropy near -8: below SAC's -A = -3, so alpha rises
    (more noise), above a target of -50, so alpha falls."""
    from tianshou.data import Batch

    seed_everything(5)
    sac = build_algorithm("sac", 20, K, BOUND, hidden_sizes=(16,), init_mean=[1.0, 0.0, -1.0], init_log_std=-4.0,
                          auto_alpha=True, alpha=0.1, target_entropy=target)
    obs, action, returns = torch.randn(32, 20), torch.rand(32, K) * 2 - 1, torch.randn(32, 1)
    for _ in range(3):
        sac._update_with_batch(Batch(obs=obs, act=action, returns=returns, info={}))
    assert (sac.alpha.value > 0.1) == alpha_rises and sac.alpha.value != pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"agent.target_entropy=-50.0 is read only with agent.auto_alpha=true"):
        build_algorithm("sac", 20, K, BOUND, target_entropy=-50.0)


@pytest.mark.parametrize(("name", "settings"), [("td3", OFF_POLICY), ("ppo", ON_POLICY), ("sac", OFF_POLICY)])
def test_short_training_run_writes_loadable_policy(tmp_path, name, settings):
    seed_everything(0)
    core = make_core(num_envs=8, seed=0)
    algo = build_algorithm(name, core.obs_dim, core.act_dim, core.action_bound,
                           hidden_sizes=(32, 32))
    before = [p.detach().clone() for p in algo.policy.parameters()]
    train_envs = BatchedVectorEnv(core)
    test_envs = make_dummy_vector_env(core.spawn, 2, seed=100)  # the per-env path trains too
    stats = train(algo, train_envs, test_envs, tmp_path, RLLoopConfig(total_steps=320, epochs=2, **settings), seed=0)
    assert stats["env_steps"] >= 320
    assert stats["test_episodes"] > 0 and np.isfinite(stats["best_reward"])
    assert stats["update_rounds"] > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, algo.policy.parameters()))
    assert (tmp_path / POLICY_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp left behind
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())

    best = load_policy(tmp_path)  # a run folder works as well as the file
    obs = core.reset()
    a_best = act(best, obs)
    assert a_best.shape == (8, K) and a_best.abs().max() <= BOUND and torch.isfinite(a_best).all()

    # round trip of the final weights: the reloaded policy acts exactly like the trained one
    save_policy(algo, tmp_path / "final.pt")
    torch.testing.assert_close(act(load_policy(tmp_path / "final.pt"), obs), act(algo, obs))
    _, reward, *_ = core.step(a_best)
    assert torch.isfinite(reward).all()


@pytest.mark.parametrize("warmup_actions", ["random", "policy"])
def test_warmup_acts_uniformly_or_with_the_warm_started_policy(tmp_path, warmup_actions):
    seed_everything(0)
    core = make_core(num_envs=8, seed=0)
    mean = torch.tensor([1.5, -0.6, 0.0])
    algo = build_algorithm("sac", core.obs_dim, K, BOUND, hidden_sizes=(16,), init_mean=mean.tolist(), init_log_std=-4.0)
    start = copy.deepcopy(algo.policy)
    train(algo, BatchedVectorEnv(core), BatchedVectorEnv(core.spawn(2, 9)), tmp_path,
          RLLoopConfig(total_steps=72, warmup_steps=64, epochs=1, batch_size=16, update_per_step=0.1,
                       warmup_actions=warmup_actions), seed=0)
    buffer = load_train_state(tmp_path)["buffer"]
    stored = buffer[buffer.sample_indices(0)]
    acts = torch.as_tensor(stored.act) * BOUND  # stored in [-1, 1], as the policy acts
    assert len(acts) == 72
    if warmup_actions == "policy":  # sampled around the start (std e^-4 before the squash), not its mode alone
        torch.testing.assert_close(acts, mean.expand_as(acts), atol=0.15, rtol=0)
        off_mode = (acts - act(start, torch.as_tensor(stored.obs))).abs().amax(1)
        assert off_mode.min() > 1e-4  # every action, warm-up ones included, is a sample
    else:  # uniform over the box (std 3/sqrt(3) = 1.73)
        assert acts.std(0).min() > 1.2  # 64 of its 72 actions


def test_train_rejects_budget_smaller_than_warmup(tmp_path):
    core = make_core(num_envs=2, seed=0)
    algo = build_algorithm("td3", core.obs_dim, K, BOUND, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="total_steps=10"):
        train(algo, BatchedVectorEnv(core), BatchedVectorEnv(core.spawn(1, 9)), tmp_path,
              RLLoopConfig(total_steps=10, warmup_steps=100))


def test_load_policy_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no policy file"):
        load_policy(tmp_path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / POLICY_FILE)
    with pytest.raises(ValueError, match="not a latentnav policy file"):
        load_policy(tmp_path / POLICY_FILE)


def test_keep_last_saves_the_final_policy_and_best_may_keep_the_start(tmp_path, monkeypatch):
    saved = []
    real_save = rl.loop.save_policy
    monkeypatch.setattr(rl.loop, "save_policy", lambda algo, path: (saved.append(len(saved)), real_save(algo, path))[1])
    algo, stats = _train_short("ppo", tmp_path / "last", seed_nets=0, keep="last")
    obs = make_core(num_envs=8, seed=0).reset()
    torch.testing.assert_close(act(load_policy(tmp_path / "last"), obs), act(algo, obs))  # the policy trained last
    assert len(saved) == 1 + stats["epochs"]  # the start (tested first), then after every epoch
    saved.clear()
    algo, stats = _train_short("ppo", tmp_path / "best", seed_nets=0)
    assert 1 <= len(saved) <= 1 + stats["epochs"]  # only when the test return improved, the start included
    with pytest.raises(ValueError, match="keep"):
        load_config_keep("first")


def load_config_keep(value):
    from configs import load_config
    from configs.schema import RLConfig
    from rl import train as rl_cli

    return load_config("age_ppo", [f"train.keep={value}"], schema=RLConfig, sections=rl_cli.SECTIONS)


class Killed(Exception):
    pass


def _train_short(name, run_dir, seed_nets, resume=False, **extra):
    seed_everything(seed_nets)
    core = make_core(num_envs=8, seed=0)
    algo = build_algorithm(name, core.obs_dim, core.act_dim, core.action_bound, hidden_sizes=(32, 32))
    settings = OFF_POLICY if AGENTS[name].off_policy else ON_POLICY
    stats = train(algo, BatchedVectorEnv(core), BatchedVectorEnv(core.spawn(2, 100)), run_dir,
                  RLLoopConfig(total_steps=576, epochs=4, **settings, **extra), seed=0, resume=resume)
    return algo, stats


@pytest.mark.parametrize("name", ["td3", "ppo", "sac"])
def test_training_resumes_from_its_last_epoch_state(tmp_path, monkeypatch, name):
    real_save, calls = rl.loop.atomic_torch_save, []

    def dies_at_second_state(obj, path):
        if Path(path).name == TRAIN_STATE_FILE:
            calls.append(path)
            if len(calls) == 2:
                raise Killed("the process dies while writing epoch 2's state")
        real_save(obj, path)

    monkeypatch.setattr(rl.loop, "atomic_torch_save", dies_at_second_state)
    with pytest.raises(Killed):
        _train_short(name, tmp_path / "run", seed_nets=0)
    monkeypatch.setattr(rl.loop, "atomic_torch_save", real_save)
    state = load_train_state(tmp_path / "run")
    assert state["counters"][0] == 1 and not list((tmp_path / "run").glob("*.tmp"))
    if AGENTS[name].off_policy:
        assert len(state["buffer"]) >= 64  # warm-up plus the first epoch's transitions

    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    algo, stats = _train_short(name, tmp_path / "run", seed_nets=123, resume=True)
    assert stats["resumed_from_epoch"] == 1 and stats["epochs"] == 4
    assert stats["env_steps"] >= 576 and np.isfinite(stats["best_reward"])
    assert stats["best_reward"] >= state["best"]["score"]  # the best score survived the restart
    assert load_train_state(tmp_path / "run")["counters"][0] == 4
    # resuming the same state again (other initial weights, all overwritten) gives the same policy
    again, _ = _train_short(name, tmp_path / "copy", seed_nets=7, resume=True)
    for a, b in zip(algo.policy.parameters(), again.policy.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_without_or_with_corrupt_state_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_state.pt' does not exist"):
        _train_short("td3", tmp_path, seed_nets=0, resume=True)
    (tmp_path / TRAIN_STATE_FILE).write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable training state"):
        load_train_state(tmp_path)
