"""The face-age core batched: network calls per step, gymnasium checks, batched vs per-env equality, pools and
starts, the builder end to end on a tiny checkpoint, and the linear-traversal warm start (toy networks)."""
import dataclasses
import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch import nn

from lightning_modules.nets.generators import GeneratorAdapter
from rl.envs import BatchedVectorEnv, SingleEnv
from rl.envs.face_age import AgeMDP, FaceAgeCore, default_epsilon, typical_set
from tests.conftest import CountingModule, paired_vector_envs
from tests.test_face_age_env import THRESHOLDS, L, transparent_core


def random_nets(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    gen = GeneratorAdapter(nn.Sequential(nn.Linear(L, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8))), L)
    age = nn.Sequential(nn.Flatten(), nn.Linear(192, 1), nn.Flatten(0))
    with torch.no_grad():
        age[1].weight.mul_(20.0)  # spread ages over several 2-year buckets
        age[1].bias.fill_(30.0)
    feats = nn.Sequential(nn.Flatten(), nn.Linear(192, 16))
    return {"generator": CountingModule(gen), "age_model": CountingModule(age), "features": CountingModule(feats)}


def random_core(num_envs: int = 4, seed: int = 0) -> FaceAgeCore:
    pool = torch.randn(300, L, generator=torch.Generator().manual_seed(1))
    pool = pool[typical_set(pool, default_epsilon(L))][:40]
    return FaceAgeCore(pool, boundary_L=torch.ones(L), num_envs=num_envs, seed=seed,
                       mdp=AgeMDP(bucket_width=2.0, p1=0.5, p2=3.0, episode_len=6), **random_nets())


def test_each_network_runs_once_per_batched_step_and_reset():
    core = random_core(num_envs=16)
    before = {k: m.calls for k, m in core.nets.items()}
    core.reset()
    core.step(torch.zeros(16, L + 2))
    core.step(torch.zeros(5, L + 2), torch.arange(5))
    assert {k: m.calls - before[k] for k, m in core.nets.items()} == dict.fromkeys(before, 3)


def test_single_env_passes_check_env():
    env = SingleEnv(random_core(num_envs=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    expected = ("symmetric and normalized", "is probably too low", "is probably too high")
    assert [str(w.message) for w in caught if not any(e in str(w.message) for e in expected)] == []
    obs_a, _ = env.reset(seed=3)
    obs_b, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs_a, obs_b)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert set(info) == {"age", "age_base", "identity", "hit", "in_typical_set", "direction", "t", "stopped"}
    assert isinstance(reward, float)


def test_batched_equals_per_env_dummy_vector_env():
    n = 5
    batched, reference = paired_vector_envs(random_core(num_envs=1), n, seed=42)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(12):
        action = rng.uniform(-3, 3, size=(n, L + 2)).astype(np.float32)
        (ob, rb, tb, trb, ib), (orf, rr, tr, trr, ir) = batched.step(action), reference.step(action)
        np.testing.assert_allclose(ob, orf, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rb, rr, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(tb, tr)
        np.testing.assert_array_equal(trb, trr)
        for info_b, info_r in zip(ib, ir):
            for key in ("hit", "direction", "t", "in_typical_set"):
                assert info_b[key] == info_r[key]
            assert info_b["identity"] == pytest.approx(info_r["identity"], rel=1e-4, abs=1e-5)
        done = np.nonzero(tb | trb)[0]
        ends += len(done)
        if len(done):
            np.testing.assert_allclose(batched.reset(done)[0], reference.reset(done)[0], rtol=1e-6)
    assert ends > 0  # episodes ended and restarted on both paths


def test_spawn_with_another_pool_and_seeded_directions():
    core = random_core(num_envs=64, seed=3)
    other = torch.zeros(1, L) + 1.0  # ‖s‖² = 8
    eval_core = core.spawn(4, 0, pool_PL=other)
    eval_core.reset()
    assert torch.equal(eval_core.base_NL, other.expand(4, -1))
    core.reset()
    frac = core.direction_N.float().mean().item()
    assert 0.2 < frac < 0.8  # sampled per episode: both directions occur
    alt = FaceAgeCore(core.pool_PL, boundary_L=torch.ones(L), num_envs=4, seed=0, mdp=AgeMDP(direction_every=2, **THRESHOLDS),
                      **{k: v.inner for k, v in core.nets.items()})
    dirs = []
    for _ in range(4):
        alt.reset()
        dirs.append(alt.direction_N.tolist())
    assert dirs == [[0, 1, 0, 1], [0, 1, 0, 1], [1, 0, 1, 0], [1, 0, 1, 0]]


def test_start_runs_chosen_bases_and_directions():
    core = random_core(num_envs=4)
    core.reset()
    counters = core._counters.clone()
    obs = core.start(torch.tensor([1, 3]), torch.tensor([7, 7]), torch.tensor([0, 1]))
    torch.testing.assert_close(obs[[1, 3], :L], core.pool_PL[[7, 7]])
    assert obs[1, -2:].tolist() == [1.0, 0.0] and obs[3, -2:].tolist() == [0.0, 1.0]
    assert core.t_N[[1, 3]].tolist() == [0, 0] and torch.equal(core._counters, counters)
    assert core.age_base_N[1].item() == pytest.approx(core.age_base_N[3].item(), abs=1e-4)  # same face
    with pytest.raises(ValueError, match="equal-length"):
        core.start(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0, 0]))


@pytest.mark.parametrize(("name", "loop"), [
    ("ppo", {"collect_steps": 64, "batch_size": 32, "repeat": 2}),
    ("sac", {"warmup_steps": 32, "batch_size": 32, "update_per_step": 0.25}),  # the table's newest entry
])
def test_short_run_on_the_toy_world_writes_policy(tmp_path, name, loop):
    from configs.schema import RLLoopConfig
    from rl.agents import POLICY_FILE, act, build_algorithm, load_policy
    from rl.loop import train
    from utils.seeding import seed_everything

    seed_everything(0)
    core = random_core(num_envs=8, seed=0)
    algo = build_algorithm(name, core.obs_dim, core.act_dim, core.action_bound, hidden_sizes=(32, 32))
    stats = train(algo, BatchedVectorEnv(core), BatchedVectorEnv(core.spawn(2, 100)), tmp_path,
                  RLLoopConfig(total_steps=256, epochs=2, **loop), seed=0)
    assert stats["env_steps"] >= 256 and stats["update_rounds"] > 0 and np.isfinite(stats["best_reward"])
    assert (tmp_path / POLICY_FILE).is_file()
    obs = core.reset()
    actions = act(load_policy(tmp_path), obs)
    assert actions.shape == (8, L + 2) and actions.abs().max() <= core.action_bound
    assert torch.isfinite(core.step(actions)[1]).all()


def test_mdp_defaults_are_valid_and_documented_in_config():
    from configs import load_config
    from configs.schema import RLConfig
    from rl.train import SECTIONS

    cfg = load_config("age_ppo", [], schema=RLConfig, sections=SECTIONS)
    mdp = cfg["env"]["mdp"]
    assert mdp == dataclasses.asdict(AgeMDP())  # the group arrives whole, every default from AgeMDP
    assert mdp["p1"] == "auto" and mdp["p2"] == "auto" and cfg["agent"]["name"] == "ppo"
    assert mdp["fail_penalty"] > mdp["episode_len"]  # failing never beats running out the clock
    assert load_config("age_ppo", ["env.mdp.p1=70"], schema=RLConfig, sections=SECTIONS)["env"]["mdp"]["p1"] == 70


# ---- the registry builder on the shipped DCGAN and a tiny age-regressor checkpoint --------------
def _one_step_checkpoint(folder, make_module, target: str, values) -> str:
    """``make_module()`` after one seeded Lightning step on 8 random 32×32 images labelled ``target`` = ``values``,
    saved."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    pl.seed_everything(0)
    module = make_module()
    batches = [{"image": torch.rand(3, 32, 32) * 2 - 1, target: torch.tensor(v)} for v in values]
    trainer = pl.Trainer(default_root_dir=str(folder), accelerator="cpu", logger=False, max_steps=1,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         limit_val_batches=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no val loader, few workers: expected for one step
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=4))
    trainer.save_checkpoint(folder / "model.ckpt")
    return str(folder / "model.ckpt")


@pytest.fixture(scope="module")
def tiny_age_checkpoint(tmp_path_factory):
    from lightning_modules.face_attributes import AgeRegressorModule

    return _one_step_checkpoint(tmp_path_factory.mktemp("age_ckpt"), lambda: AgeRegressorModule(backbone="small", input_size=32),
                                "age", [20.0 + 5 * i for i in range(8)])


def test_face_age_builder_end_to_end(tiny_age_checkpoint, tmp_path):
    import importlib.util

    from rl.builders import get_env_builder
    from rl.builders.face_age import FaceAgeFactory

    if importlib.util.find_spec("gan_face_generate") is None:
        pytest.skip("gan-face-generate (the offline DCGAN weights) is not installed")
    small = {"age_checkpoint": str(tiny_age_checkpoint), "boundary_samples": 200, "boundary_ratio": 0.05,
             "train_pool": 40, "eval_pool": 8, "calibration_samples": 16}
    factory = get_env_builder("face_age")(**small)
    assert isinstance(factory, FaceAgeFactory)
    assert factory.boundary_stats["n_pos"] == 10 and factory.boundary_L.norm().item() == pytest.approx(1.0)
    assert 0 <= factory.calibration["p1"] < factory.calibration["p2"]
    core, eval_core = factory(3, 0), factory.eval_core(2, 0)
    assert (core.obs_dim, core.act_dim, len(core.pool_PL), len(eval_core.pool_PL)) == (202, 102, 40, 8)
    train_rows = {tuple(r) for r in core.pool_PL.tolist()}
    assert not train_rows & {tuple(r) for r in eval_core.pool_PL.tolist()}  # disjoint pools
    assert core.mdp.p1 == factory.calibration["p1"]
    core.reset()
    obs, rew, *_ = core.step(torch.zeros(3, 102))
    assert obs.shape == (3, 202) and torch.isfinite(rew).all()
    # a stored boundary and explicit thresholds: nothing is trained or calibrated
    path = tmp_path / "age_boundary.npy"
    np.save(path, factory.boundary_L.numpy()[None, :])
    assert factory.calibrated == {"mdp.p1": factory.calibration["p1"], "mdp.p2": factory.calibration["p2"]}
    again = get_env_builder("face_age")(**{**small, "boundary_path": str(path), "mdp": {"p1": 1.0, "p2": 2.0}})
    assert torch.equal(again.boundary_L, factory.boundary_L) and again.calibration == {} and again.calibrated == {}
    assert torch.equal(again.eval_pool_PL, factory.eval_pool_PL)  # seeded pools
    with pytest.raises(ValueError, match="p1='sometimes' invalid"):
        get_env_builder("face_age")(**{**small, "boundary_path": str(path), "mdp": {"p1": "sometimes"}})
    with pytest.raises(FileNotFoundError, match="boundary_path"):
        get_env_builder("face_age")(**{**small, "boundary_path": str(tmp_path / "none.npy")})
    with pytest.raises(ValueError, match="inertia"):
        get_env_builder("face_age")(**{**small, "mdp": {"inertia": 1.5}})
    # keep_gender: the age boundary becomes age ⟂ gender and no step moves along the gender boundary
    from lightning_modules.face_attributes import GenderClassifierModule

    gender = _one_step_checkpoint(tmp_path, lambda: GenderClassifierModule(backbone="small", input_size=32), "gender",
                                  [i % 2 for i in range(8)])
    kept = get_env_builder("face_age")(**{**small, "boundary_path": str(path), "mdp": {"p1": 1.0, "p2": 2.0},
                                          "gender_checkpoint": gender, "keep_gender": True})
    g = kept.base.kept_KL[0]
    assert "gender" in kept.boundary_stats and kept.boundary_L @ g == pytest.approx(0.0, abs=1e-5)
    assert kept.boundary_L @ factory.boundary_L > 0.5
    core = kept(2, 0)
    before = core.reset()[:, :100]
    after = core.step(torch.rand(2, 102, generator=torch.Generator().manual_seed(0)) * 2 - 1)[0][:, :100]
    assert ((after - before) @ g).abs().max() < 1e-4 and (after - before).norm(dim=1).min() > 0.1


def test_warm_start_policy_is_the_linear_traversal():
    from evaluation.face_age import linear_policy, rollout
    from rl.agents import act, build_algorithm
    from rl.builders.face_age import FaceAgeFactory
    from utils.seeding import seed_everything

    core = transparent_core(num_envs=2, p1=100.0, p2=200.0)
    factory = FaceAgeFactory(core, core.pool_PL, {}, {}, warm_start_extent=3.0, gen_log_std=-3.0)
    hp = factory.agent_hparams("ppo", {"hidden_sizes": (16,), "init_log_std": -2.0})
    # w1 = 3 units / (E_len·(1 − T)) = 0.6; k_gen along the boundary (e0) at half the bound; w2 = 0
    assert hp["init_mean"] == pytest.approx([1.0] + [0.0] * (L - 1) + [0.6, 0.0])
    assert hp["init_log_std"] == [-3.0] * L + [-2.0, -2.0] and hp["hidden_sizes"] == (16,)
    seed_everything(0)
    policy = build_algorithm("ppo", core.obs_dim, core.act_dim, core.action_bound, **hp)
    ids, direction = torch.tensor([0, 0]), torch.tensor([0, 1])
    warm = rollout(core, lambda obs: act(policy, obs), ids, direction)
    linear = rollout(core, linear_policy(core, 3.0), ids, direction)
    assert warm["buckets"].tolist() == linear["buckets"].tolist() == [6.0, 6.0]
    torch.testing.assert_close(warm["identity_max"], linear["identity_max"], rtol=0.05, atol=0.0)
    # SAC starts at the same traversal, exactly (its unset log std starts at -1)
    hp = factory.agent_hparams("sac", {"hidden_sizes": (16,), "init_log_std": None})
    assert hp["init_log_std"] == [-3.0] * L + [-1.0, -1.0]
    sac = build_algorithm("sac", core.obs_dim, core.act_dim, core.action_bound, **hp)
    warm_sac = rollout(core, lambda obs: act(sac, obs), ids, direction)
    for key in ("age_change", "identity_max", "steps"):  # the same walk up to float error (buckets sit on an edge)
        torch.testing.assert_close(warm_sac[key], linear[key], rtol=1e-5, atol=1e-5)
    # off by default; Gaussian agents only; one initial mean
    assert FaceAgeFactory(core, core.pool_PL, {}, {}).agent_hparams("td3", {"tau": 0.1}) == {"tau": 0.1}
    with pytest.raises(ValueError, match=r"shape a Gaussian policy's start.*agent.name='td3' has not"):
        factory.agent_hparams("td3", {})
    with pytest.raises(ValueError, match="agent.init_mean and env.warm_start_extent both"):
        factory.agent_hparams("ppo", {"init_mean": [0.0] * (L + 2)})
    with pytest.raises(ValueError, match=r"warm_start_extent=30.0: extent 30 needs w1=6.00 per step, outside \[0, action bound 2\]"):
        FaceAgeFactory(core, core.pool_PL, {}, {}, warm_start_extent=30.0).agent_hparams("ppo", {})
    # via the learned direction: the same traversal made by w2·k_gen, which needs a signed k_gen
    with pytest.raises(ValueError, match="warm_start_via='gen' invalid.*signed_gen=true"):
        FaceAgeFactory(core, core.pool_PL, {}, {}, warm_start_extent=3.0, warm_start_via="gen")
    signed = transparent_core(num_envs=2, p1=100.0, p2=200.0, signed_gen=True)
    via_gen = FaceAgeFactory(signed, signed.pool_PL, {}, {}, warm_start_extent=3.0, warm_start_via="gen")
    hp = via_gen.agent_hparams("ppo", {"hidden_sizes": (16,)})
    assert hp["init_mean"][L:] == pytest.approx([0.0, 0.6])
    seed_everything(0)
    policy = build_algorithm("ppo", signed.obs_dim, signed.act_dim, signed.action_bound, **hp)
    assert rollout(signed, lambda obs: act(policy, obs), ids, direction)["buckets"].tolist() == [6.0, 6.0]


# ---- env.age_views: A_reg read over random views of each face (not from the paper) ---------------
def test_random_views_keep_the_image_first_and_are_seeded():
    from rl.builders.face_age_models import RandomViews

    x = torch.rand(3, 3, 16, 16) * 2 - 1
    assert torch.equal(RandomViews(1)(x), x)
    out = RandomViews(4, seed=3)(x)
    assert out.shape == (12, 3, 16, 16) and torch.equal(out[:3], x)
    assert not torch.allclose(out[3:], x.repeat(3, 1, 1, 1))  # the other views differ from the image
    assert torch.equal(RandomViews(4, seed=3)(x), out)  # same seed, same views
    assert not torch.equal(RandomViews(4, seed=4)(x), out)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=rf"age_views={bad!r} invalid: expected an int >= 1"):
            RandomViews(bad)


def test_view_averaged_age_is_the_mean_over_views_and_keeps_the_face_own_features(tiny_age_checkpoint):
    from lightning_modules.checkpoints import load_module
    from rl.builders.face_age_models import RandomViews, ViewAveragedAge, reward_models

    model = load_module(str(tiny_age_checkpoint), "age_regressor")
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        stacked = RandomViews(3, seed=1)(x)
        age, feats = ViewAveragedAge(model, RandomViews(3, seed=1), "mid")(x)
        torch.testing.assert_close(age, model(stacked).reshape(3, 5).mean(0))
        torch.testing.assert_close(feats, model.features(x))  # F of eq. 8 is the face's own, not the views'
        assert not torch.allclose(age, model(x))  # the views move the reading
        torch.testing.assert_close(ViewAveragedAge(model, RandomViews(3, seed=1))(x), age)
    reward_age, features, both = reward_models(str(tiny_age_checkpoint), "age_mid", age_views=3, views_seed=1)
    assert isinstance(reward_age, ViewAveragedAge) and isinstance(both, ViewAveragedAge) and both.kind == "mid"
    with pytest.raises(ValueError, match="age_views=2 needs a trained age regressor"):
        reward_models("packaged", "pixels", age_views=2)
    with pytest.raises(ValueError, match="age_views=0 invalid"):
        reward_models(str(tiny_age_checkpoint), "age_mid", age_views=0)
