"""Experiment B's options not from the paper: AE label head / augmentation / width, every-target rewards,
z prior, TD3's one-step options (relabeling, per-target critic, self-imitation), the tuned and paper presets."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from tianshou.algorithm import TD3
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.utils.net.continuous import ContinuousCritic

from configs import load_config
from configs.bench_schema import BenchMnistTaskConfig
from lightning_modules.autoencoder import AutoencoderModule
from rl.agents import act, build_algorithm, load_policy
from rl.agents.td3_bandit import BanditTD3, PerTargetCritic
from rl.builders.mnist_task import MnistTaskFactory
from rl.envs import BatchedVectorEnv, SingleEnv, task_reward
from rl.envs.mnist_rewards import task_rewards_all, z_prior_penalty
from tests.test_rl_mnist_env import K, make_core
from utils.errors import UserError

BANDIT = dict(critic="per_target", relabel=True, imitate=1.0)


def bandit_core(num_envs: int = 1, **kwargs):
    core = make_core(num_envs=num_envs, tasks="add:0-9")
    return type(core)(core.codes_ND, core.labels_N, tasks=core.tasks, num_envs=num_envs, z_dim=K,
                      all_rewards=True, **kwargs, **core.nets)


# ---- autoencoder ----------------------------------------------------------------------------
def test_paper_autoencoder_unchanged_and_options_change_shapes_and_loss():
    torch.manual_seed(0)
    ref = AutoencoderModule(code_dim=32)
    assert not hasattr(ref, "label_head") and ref.encoder.net[0].out_channels == 16
    assert ref.encoder.net[-1].in_features == 32 * 4 * 4
    torch.manual_seed(0)
    wide = AutoencoderModule(code_dim=32, encoder_width=32, label_weight=1.0)
    assert wide.encoder.net[0].out_channels == 32 and wide.encoder.net[-1].in_features == 64 * 4 * 4
    assert wide.label_head.weight.shape == (10, 32)
    batch = {"image": torch.rand(6, 1, 28, 28), "label": torch.arange(6)}
    # validation step (no augmentation, no noise): loss = BCE + λ·CE of the label head on the code
    loss = wide._shared_step(batch, "val")
    code = wide.encoder(batch["image"])
    bce = F.binary_cross_entropy_with_logits(wide.decoder(code), batch["image"])
    torch.testing.assert_close(loss, bce + F.cross_entropy(wide.label_head(code), batch["label"]))
    loss.backward()
    assert wide.label_head.weight.grad.abs().sum() > 0 and wide.encoder.net[0].weight.grad.abs().sum() > 0
    with pytest.raises(UserError, match="label_weight"):
        AutoencoderModule(label_weight=-1.0)


def test_autoencoder_augment_moves_the_training_target():
    ae = AutoencoderModule(code_dim=8, augment=True)
    seen = []
    ae.decoder.register_forward_hook(lambda m, i, o: seen.append(o))
    image = torch.zeros(4, 1, 28, 28)
    image[:, :, 10:18, 12:16] = 1.0
    torch.manual_seed(1)
    train_loss = ae._shared_step({"image": image}, "train")
    val_loss = ae._shared_step({"image": image}, "val")
    # same reconstruction network, but the train target is an affine copy: a different BCE
    assert not torch.isclose(train_loss, val_loss)


# ---- env: every-target rewards, z prior -----------------------------------------------------
def test_rewards_all_equal_task_reward_for_each_target():
    logits, d = torch.randn(5, 10), torch.randn(5)
    all_r = task_rewards_all(logits, d, 30.0, 3.0, "log_prob")
    for c in range(10):
        torch.testing.assert_close(all_r[:, c], task_reward(logits, torch.full((5,), c), d, 30.0, 3.0, "log_prob"))


def test_core_info_rewards_all_match_rewards_one_by_one():
    core = bandit_core(num_envs=6)
    z = torch.randn(6, K)
    core.reset()
    _, reward, *_, info = core.step(z)
    assert info["rewards_all"].shape == (6, 10)
    torch.testing.assert_close(info["rewards_all"].gather(1, info["target"][:, None])[:, 0], reward)
    with torch.inference_mode():  # every target's reward from the core's own networks, one by one
        code = core.nets["generator"](z)
        logits, d = core.nets["reward_classifier"](core.nets["decoder"](code)), core.nets["discriminator"](code)
    for c in range(10):
        torch.testing.assert_close(info["rewards_all"][:, c], task_reward(logits, torch.full((6,), c), d))
    plain = make_core(num_envs=2)
    plain.reset()
    assert "rewards_all" not in plain.step(torch.zeros(2, K))[-1]  # off by default
    single = SingleEnv(bandit_core().spawn(1, 0))  # the gymnasium view passes the row's N×10 through
    single.reset(seed=0)
    assert single.step(np.zeros(K, dtype=np.float32))[-1]["rewards_all"].shape == (10,)


def test_z_prior_penalty_is_subtracted_from_the_reward():
    z = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    torch.testing.assert_close(z_prior_penalty(z, 2.0, 4.0), torch.tensor([2.0, 0.0]))
    plain, prior = bandit_core(num_envs=3), bandit_core(num_envs=3, z_prior_weight=1.0, z_prior_radius=0.5)
    z = torch.full((3, K), 2.0)
    for core in (plain, prior):
        core.reset()
    (_, r0, *_, i0), (_, r1, *_, i1) = plain.step(z), prior.step(z)
    torch.testing.assert_close(r0 - r1, z_prior_penalty(z, 1.0, 0.5))
    torch.testing.assert_close(i0["rewards_all"] - i1["rewards_all"], z_prior_penalty(z, 1.0, 0.5)[:, None].expand(3, 10))


# ---- TD3's one-step options -------------------------------------------------------------------
def test_default_td3_is_plain_tianshou_td3():
    algo = build_algorithm("td3", 20, K, 3.0, hidden_sizes=(8,))
    assert type(algo) is TD3 and isinstance(algo.critic, ContinuousCritic)
    assert algo.latentnav_spec["hparams"]["critic"] == "twin" and not algo.latentnav_spec["hparams"]["relabel"]


def test_factory_hands_task_tables_only_when_asked_and_options_fail_without_them():
    core = make_core(num_envs=1, tasks="add:0-9")
    assert MnistTaskFactory(core).agent_hparams("td3", {"tau": 0.1}) == {"tau": 0.1}
    assert MnistTaskFactory(core).agent_hparams("ppo", {}) == {}
    with pytest.raises(UserError, match="env.all_rewards=true"):
        MnistTaskFactory(core).agent_hparams("td3", {"relabel": True})
    hp = MnistTaskFactory(bandit_core()).agent_hparams("td3", {"critic": "per_target"})
    assert np.array(hp["task_encodings"]).shape == (10, 13) and hp["task_targets"][3][4] == 7
    with pytest.raises(UserError, match="task tables"):  # e.g. another env: nobody supplies the tables
        build_algorithm("td3", 20, K, 3.0, relabel=True)
    with pytest.raises(UserError, match="imitate"):
        build_algorithm("td3", 20, K, 3.0, imitate=1.0, **{k: hp[k] for k in ("task_encodings", "task_targets")})


def _collected(hp: dict, steps: int = 32):
    base = bandit_core()
    hp = MnistTaskFactory(base).agent_hparams("td3", {"hidden_sizes": (16,), **hp})
    torch.manual_seed(0)
    algo = build_algorithm("td3", base.obs_dim, K, base.action_bound, **hp)
    venv = BatchedVectorEnv(base.spawn(4, 0))
    venv.seed(0)
    collector = Collector(algo, venv, VectorReplayBuffer(64, 4))
    collector.reset()
    collector.collect(n_step=steps, random=True)
    return base, algo, collector


def test_per_target_critic_has_one_head_per_target_digit():
    _, algo, _ = _collected(dict(critic="per_target"))
    assert isinstance(algo, BanditTD3) and isinstance(algo.critic, PerTargetCritic)
    assert algo.critic(None, torch.zeros(7, K)).shape == (7, 10)


def test_relabel_scores_each_transition_for_every_task():
    base, algo, collector = _collected(dict(relabel=True))
    obs, targets = algo._expand(torch.as_tensor(collector.buffer.obs[:2]), torch.tensor([3, 9]))
    assert obs.shape == (20, base.obs_dim) and targets[:10].tolist() == [(3 + k) % 10 for k in range(10)]
    torch.testing.assert_close(obs[:10, -13:], base.tasks.encode(torch.arange(10)))  # each task's encoding
    torch.testing.assert_close(obs[:10, :-13], torch.as_tensor(collector.buffer.obs[:1, :-13]).expand(10, -1))
    rows = []
    algo.critic.register_forward_hook(lambda m, i, o: rows.append(len(o)))
    with policy_within_training_step(algo.policy):
        algo.update(buffer=collector.buffer, sample_size=8)
    assert rows[0] == 8 * 10  # the critic is fitted on B·T relabeled rows


@pytest.mark.parametrize("hp", [BANDIT, dict(critic="per_target", actor_q="min"), dict(actor_q="mean")])
def test_bandit_td3_updates_from_collected_transitions(hp):
    _, algo, collector = _collected(hp)
    before = [p.clone() for p in algo.policy.actor.parameters()]
    with policy_within_training_step(algo.policy):
        for _ in range(2):
            stats = algo.update(buffer=collector.buffer, sample_size=16)
    assert np.isfinite(stats.critic1_loss) and np.isfinite(stats.actor_loss)
    assert any((a != b).any() for a, b in zip(before, algo.policy.actor.parameters()))


def test_tuned_agent_trains_through_rl_train_and_its_policy_loads(mnist_stage_runs, tmp_path):
    from configs.schema import RLConfig
    from rl.train import SECTIONS, train_agent
    from tests.conftest import tiny_agent_overrides

    cfg = load_config("mnist_task", [*tiny_agent_overrides(mnist_stage_runs), f"out_dir={tmp_path}",
                                     *load_config("bench_mnist_task", schema=BenchMnistTaskConfig)["tuned"]["agent"],
                                     "train.total_steps=640"], schema=RLConfig, sections=SECTIONS)
    assert cfg["agent"]["critic"] == "per_target" and cfg["agent"]["task_encodings"] is None
    run = train_agent(cfg)
    policy = load_policy(run)
    spec = policy.latentnav_spec["hparams"]
    assert spec["relabel"] and np.array(spec["task_encodings"]).shape == (10, 13)
    assert act(policy, torch.zeros(3, policy.latentnav_spec["obs_dim"])).shape == (3, policy.latentnav_spec["act_dim"])


# ---- presets ----------------------------------------------------------------------------------
def test_default_benchmark_is_tuned_and_the_paper_preset_is_not():
    tuned = load_config("bench_mnist_task", schema=BenchMnistTaskConfig)
    paper = load_config("bench_mnist_task_paper", schema=BenchMnistTaskConfig)
    assert "module.label_weight=1.0" in tuned["tuned"]["autoencoder"] and "agent.imitate=1.0" in tuned["tuned"]["agent"]
    assert paper["tuned"] == {} and paper["overrides"] == {} and paper["schedule"] == "serial"

    assert tuned["schedule"] == "overlap"  # wall time only: the same stage configs

    def rest(bench):  # the preset differs only in `tuned` and the schedule (an empty override list is no override)
        return {**{k: v for k, v in bench.items() if k not in ("tuned", "schedule")},
                "overrides": {k: v for k, v in bench["overrides"].items() if v}}
    assert rest(tuned) == rest(paper)


def test_tuned_overrides_come_before_the_users(tmp_path):
    from benchmarks.stages import check_overrides, stage_config

    bench = load_config("bench_mnist_task", [f"runs_dir={tmp_path}", "overrides.autoencoder=[trainer.max_epochs=2]"],
                        schema=BenchMnistTaskConfig)
    cfg = stage_config(bench, "autoencoder", "autoencoder", {}, rl=False)
    assert cfg["module"]["label_weight"] == 1.0 and cfg["module"]["encoder_width"] == 32
    assert cfg["trainer"]["max_epochs"] == 2  # the user's override wins
    with pytest.raises(UserError, match="tuned.agnet"):
        check_overrides({**bench, "tuned": {"agnet": []}})


# ---- benchmark: tuned default, noisy export, overlap schedule -----------------------------------
def test_tuned_benchmark_exports_noisy_outputs_and_overlap_gives_the_same_figures(mnist_stage_runs, tmp_path, capsys):
    from benchmarks.run import main as bench_main
    from tests.conftest import FAST_TRAINER, tiny_agent_overrides

    runs = mnist_stage_runs
    stages = [f"stages.{k}={runs[k]}" for k in ("autoencoder", "latent_gan", "classifier")]
    agent = "[" + ",".join(f"'{o}'" for o in tiny_agent_overrides(runs) if not o.startswith("env.")) + "]"
    judge = "[" + ",".join([*FAST_TRAINER, "data.source=idx", f"data.root={runs['idx']}", "data.batch_size=16"]) + "]"
    common = [*stages, f"overrides.agent={agent}", f"overrides.judge={judge}", f"runs_dir={tmp_path / 'runs'}",
              f"eval.test_root={runs['idx']}", "eval.max_digits=6", "eval.task_sets=['+1','-1']"]

    def bench(i, *extra):
        code = bench_main(["--experiment", "mnist-task", *common, f"results_dir={tmp_path / f'results{i}'}", *extra])
        assert code == 0, capsys.readouterr().err[-2000:]
        out = Path(capsys.readouterr().out.strip().splitlines()[-1])
        return json.loads((out / "summary.json").read_text())

    export = tmp_path / "out.npz"
    serial = bench(0, f"eval.export={export}")
    agent_cfg = yaml.safe_load((Path(serial["runs"]["agent[+1]"]) / "config.yaml").read_text())
    assert agent_cfg["agent"]["critic"] == "per_target" and agent_cfg["env"]["augment_copies"] == 4  # tuned default
    data = np.load(export)
    assert {"images", "targets", "noisy_images", "noisy_targets"} <= set(data.files)
    assert data["noisy_images"].shape == data["images"].shape == (6, 28, 28)
    assert (data["noisy_targets"] == data["targets"]).all() and not np.array_equal(data["noisy_images"], data["images"])
    overlap = bench(1, "schedule=overlap")  # every stage reused; the evaluation runs in workers
    assert overlap["runs"] == serial["runs"] and set(overlap["eval_wall_s"]) == {"eval[+1]", "eval[-1]", "eval[common]"}
    assert overlap["task_sets"] == serial["task_sets"]
    assert overlap["recognition_ceiling"] == pytest.approx(serial["recognition_ceiling"], abs=0.05)
    retrained = bench(2, "schedule=overlap", "overrides.judge=[" + judge[1:-1] + ",seed=5]")  # judge in a worker
    assert retrained["runs"]["judge"] != serial["runs"]["judge"] and "judge" in retrained["stage_wall_s"]
    assert retrained["runs"]["agent[+1]"] == serial["runs"]["agent[+1]"]
