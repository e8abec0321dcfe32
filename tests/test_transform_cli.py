"""Experiment C entry points on tiny budgets: rl.train transform_pg, fit transform_rnn, the transformations benchmark."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from configs import load_config
from lightning_modules.fit import SECTIONS, fit
from rl.agents import load_policy
from tests.conftest import FAST_TRAINER, make_idx_folder

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory) -> dict:
    """Tiny autoencoder and realism discriminator runs on a synthetic IDX folder."""
    root = tmp_path_factory.mktemp("transform")
    idx = make_idx_folder(root / "idx", n_train=96, n_test=24)
    common = [*FAST_TRAINER, f"out_dir={root / 'runs'}", "data.source=idx", f"data.root={idx}", "data.batch_size=16"]
    return {"idx": idx, "root": root,
            "autoencoder": fit(load_config("autoencoder", common, sections=SECTIONS)),
            "discriminator": fit(load_config("realism_discriminator", [*common, "module.width=4"], sections=SECTIONS))}


def pg_overrides(runs: dict, with_env: bool = True) -> list:
    env = [f"env.discriminator_checkpoint={runs['discriminator']}", "env.source=idx", f"env.root={runs['idx']}",
           "env.rewards.steps=2", f"agent.init_autoencoder={runs['autoencoder']}"]
    return [*(env if with_env else []), "train.total_steps=24", "train.epochs=2", "train.num_envs=4",
            "train.collect_steps=8", "train.test_envs=4", "train.test_episodes=4", "agent.hidden=16", "agent.width=2"]


def rnn_overrides(runs: dict, with_data: bool = True) -> list:
    data = [f"module.discriminator_checkpoint={runs['discriminator']}", "data.source=idx", f"data.root={runs['idx']}",
            "module.rewards.steps=2", f"module.init_autoencoder={runs['autoencoder']}"]
    return [*(data if with_data else []), *FAST_TRAINER, "data.batch_size=8", "module.hidden=16"]


def last_line(proc) -> Path:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def test_rl_train_transform_pg(stage_runs, tmp_path):
    out = last_line(run("-m", "rl.train", "transform_pg", *pg_overrides(stage_runs), f"out_dir={tmp_path}"))
    assert out.parent == tmp_path / "transform_pg"
    for name in ("config.yaml", "policy.pt", "curve.json", "train_summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "train_summary.json").read_text())
    # 2 epochs of ceil(24 / 2) = 12 steps: 2 collections of 4 envs × 2 steps each
    assert summary["env_steps"] == 2 * 2 * 8 and summary["epochs"] == 2
    curve = json.loads((out / "curve.json").read_text())
    assert sum("test_return" in row for row in curve) == 3 and curve[-1]["episodes"] == 16  # tests: before, 2 epochs
    assert load_policy(out).generate(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28), 2).shape == (2, 2, 1, 28, 28)


def test_fit_transform_rnn(stage_runs, tmp_path):
    out = last_line(run("-m", "lightning_modules.fit", "transform_rnn", *rnn_overrides(stage_runs), f"out_dir={tmp_path}"))
    for name in ("config.yaml", "metrics.csv", "test_metrics.json", "checkpoints/best.ckpt"):
        assert (out / name).is_file(), name
    assert "test/return" in json.loads((out / "test_metrics.json").read_text())["metrics"]


@pytest.mark.parametrize("name, schema, override, message", [
    ("transform_pg", "rl", "env.rewards.distance=cosine", "env.rewards.distance='cosine' is not allowed"),
    ("transform_pg", "rl", "env.steps=3", "unknown key 'env.steps'"),
    ("transform_pg", "rl", "agent.lr=0.1", "unknown key 'agent.lr'"),
    ("transform_pg", "rl", "agent.name=reinforce", "unknown agent 'reinforce'"),
    ("transform_rnn", "fit", "data.goal_class=odd", "data.goal_class='odd' is not allowed"),
    ("transform_rnn", "fit", "module.rewards.realism_score=logit", "module.rewards.realism_score='logit' is not allowed"),
])
def test_bad_config_values_name_the_value(name, schema, override, message):
    from configs import ConfigError
    from configs.schema import RLConfig
    from rl.train import SECTIONS as RL_SECTIONS

    kwargs = {"schema": RLConfig, "sections": RL_SECTIONS} if schema == "rl" else {"sections": SECTIONS}
    with pytest.raises(ConfigError, match=message) as info:
        load_config(name, [override], **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("override, message", [
    ("goal_class=odd", "goal_class='odd' is not allowed"),
    ("stages.transform_pg=[a,b]", "stages.transform_pg=['a', 'b'] invalid"),
    ("seeds=[1,1]", "seeds=[1, 1] invalid"),
])
def test_bad_benchmark_values(override, message):
    from benchmarks.transformations import check_bench
    from configs.bench_schema import BenchTransformationsConfig

    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_bench(load_config("bench_transformations", [override], schema=BenchTransformationsConfig))


@pytest.mark.parametrize("args, message", [
    (["-m", "rl.train", "transform_pg", "agent.code_dim=0"], "agent.code_dim=0 invalid"),
    (["-m", "lightning_modules.fit", "transform_rnn", "module.rewards.distance_weight=-1"], "distance_weight=-1.0 invalid"),
    (["benchmarks/run.py", "--experiment", "transformations", "objective.distance=cosine"], "objective.distance='cosine'"),
])
def test_entry_points_fail_with_one_line(args, message, tmp_path):
    where = "results_dir" if args[0].startswith("benchmarks") else "out_dir"
    proc = run(*args, f"{where}={tmp_path}")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # no half-written run or result folder


def test_transformations_benchmark_writes_report(stage_runs, tmp_path):
    runs = stage_runs
    pg = [*pg_overrides(runs, False), "env.source=idx", f"env.root={runs['idx']}"]
    rnn = [*rnn_overrides(runs, False), "data.source=idx", f"data.root={runs['idx']}"]
    listed = lambda items: "[" + ",".join(f"'{o}'" for o in items) + "]"  # noqa: E731
    proc = run("benchmarks/run.py", "--experiment", "transformations", "seeds=[0,1]", "objective.steps=2",
               f"stages.autoencoder={runs['autoencoder']}", f"stages.discriminator={runs['discriminator']}",
               f"stages.judge_discriminator={runs['discriminator']}",
               f"overrides.transform_pg={listed(pg)}", f"overrides.transform_rnn={listed(rnn)}",
               f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}", f"eval.test_root={runs['idx']}",
               "eval.max_digits=12", "eval.strip_pairs=3")
    out = last_line(proc)
    names = ["report.md", "summary.json", "table.csv", "config.yaml", "curves.png",
             *[f"strip_{m}.png" for m in ("transform_pg", "transform_rnn", "pixel_interp", "ae_interp")]]
    for name in names:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_pairs"] == 12 and len(summary["runs"]["transform_pg"]) == 2
    methods = {row["method"]: row for row in summary["table"]}
    assert set(methods) == {"transform_pg", "transform_rnn", "pixel_interp", "ae_interp"}
    assert methods["transform_rnn"]["seeds"] == 2 and methods["pixel_interp"]["final_l2_mean"] == 0.0
    assert set(summary["winners"]) >= {"return", "final_l2", "realism", "judge_realism"}
    report = (out / "report.md").read_text()
    assert "Test data: MNIST test split" in report and "± " in report
    # a second run reuses every trained stage (same configs)
    again = last_line(run(*proc.args[1:]))
    assert json.loads((again / "summary.json").read_text())["runs"] == summary["runs"]
