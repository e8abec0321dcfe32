"""``python -m rl.train`` and ``benchmarks/run.py --experiment mnist-task`` end to end on tiny runs."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rl.agents import act, load_policy
from tests.conftest import tiny_agent_overrides

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_rl_train_writes_policy_and_config(mnist_stage_runs, tmp_path):
    proc = run("-m", "rl.train", "mnist_task", *tiny_agent_overrides(mnist_stage_runs), f"out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "mnist_task"
    for name in ("config.yaml", "policy.pt", "train_summary.json"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["env_steps"] >= 512 and np.isfinite(summary["best_reward"])
    policy = load_policy(run_dir)
    actions = act(policy, torch.zeros(4, 32 + 13))
    assert actions.shape == (4, 5) and actions.abs().max() <= 3.0


def test_rl_train_rejects_bad_config(tmp_path):
    proc = run("-m", "rl.train", "mnist_task", "agent.exploration_nois=0.1", f"out_dir={tmp_path}")
    assert proc.returncode == 2
    assert "agent.exploration_nois" in proc.stderr and "exploration_noise" in proc.stderr
    proc = run("-m", "rl.train", "mnist_task", f"out_dir={tmp_path}",
               f"env.ae_checkpoint={tmp_path / 'none'}")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    # a budget that leaves no collection after the warm-up fails before the env (and its checkpoints) loads
    proc = run("-m", "rl.train", "mnist_task", f"out_dir={tmp_path}", "train.total_steps=100",
               f"env.ae_checkpoint={tmp_path / 'none'}")
    assert proc.returncode == 2 and "total_steps=100 leaves" in proc.stderr and "does not exist" not in proc.stderr
    # so does an agent value that contradicts another (an entropy target without auto_alpha)
    proc = run("-m", "rl.train", "mnist_task", f"out_dir={tmp_path}", "agent.name=sac", "agent.target_entropy=-5",
               f"env.ae_checkpoint={tmp_path / 'none'}")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        "error: agent.target_entropy=-5.0 is read only with agent.auto_alpha=true")
    assert not any(tmp_path.iterdir())


def test_mnist_task_benchmark_writes_report(mnist_stage_runs, tmp_path):
    runs = mnist_stage_runs
    stages = [f"stages.{k}={runs[k]}" for k in ("autoencoder", "latent_gan", "classifier", "judge")]
    agent = "[" + ",".join(f"'{o}'" for o in tiny_agent_overrides(runs) if not o.startswith("env.")) + "]"
    export = tmp_path / "out.npz"
    proc = run("benchmarks/run.py", "--experiment", "mnist-task", *stages, f"overrides.agent={agent}",
               f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}", f"eval.test_root={runs['idx']}",
               "eval.max_digits=12", "eval.task_sets=[add:0-9,'+1']", f"eval.export={export}",
               "eval.pipeline_ceiling_steps=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = Path(proc.stdout.strip().splitlines()[-1])
    for name in ("report.md", "summary.json", "table.csv", "config.yaml", "grid_add_0-9_clean.png", "grid_+1_noisy.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    clean = summary["task_sets"]["add:0-9"]["clean"]
    assert clean["n_digits"] == 12 and len(clean["judge_acc_per_task"]) == 10
    assert 0.0 <= clean["judge_acc"] <= 1.0
    assert clean["judge_acc"] == np.mean(clean["judge_acc_per_task"])  # equal task counts
    data = np.load(export)
    assert data["images"].shape == (120, 28, 28) and data["targets"].shape == (120,)
    assert data["images"].min() >= 0 and data["images"].max() <= 1
    assert (data["targets"] == (data["labels"] + data["task_ids"]) % 10).all()
    assert "Test data: MNIST test split" in (out / "report.md").read_text()
    # one agent per task set by default, each trained on its own tasks only
    agents = {k: v for k, v in summary["runs"].items() if k.startswith("agent")}
    assert sorted(agents) == ["agent[+1]", "agent[add:0-9]"] and len(set(agents.values())) == 2
    tasks = {k: yaml.safe_load((Path(v) / "config.yaml").read_text())["env"]["tasks"] for k, v in agents.items()}
    assert tasks == {"agent[+1]": ["+1"], "agent[add:0-9]": ["add:0-9"]}
    assert sum(summary["lgan_sample_quality"]["class_hist"]) == pytest.approx(1.0)
    assert len(summary["lgan_sample_quality"]["coverage_best_judged_p"]) == 10
    ceiling = summary["pipeline_ceiling"]
    assert ceiling["steps"] == 3 and ceiling["task_set"] == "add:0-9" and 0.0 <= ceiling["clean"] <= 1.0
    assert "Pipeline ceiling (not RL" in (out / "report.md").read_text()


def test_speed_suite_reports_batched_vs_dummy(mnist_stage_runs, tmp_path):
    env = [o for o in tiny_agent_overrides(mnist_stage_runs) if o.startswith("env.")]
    overrides = "[" + ",".join(f"'{o}'" for o in [*env, "env.noisy_copies=0"]) + "]"
    proc = run("benchmarks/run.py", "--suite", "speed", "envs=[mnist_task]", f"env_overrides.mnist_task={overrides}",
               "num_envs=4", "steps=2", "dummy_steps=1", f"results_dir={tmp_path}", "num_threads=[1,2]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = Path(proc.stdout.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rows"]
    assert [(r["env"], r["threads"]) for r in rows] == [("mnist_task", 1), ("mnist_task", 2)]
    assert summary["stand_ins"] == [] and {r["untrained"] for r in rows} == {"none"}  # trained runs given: used
    row = rows[0]
    assert row["num_envs"] == 4
    assert row["batched_us_per_env_step"] == pytest.approx(1e6 / row["batched_steps_per_s"])
    # FLOPs per env step of the real (tiny-trained) nets: generator, decoder, SmallCNN, discriminator
    assert 8.0 < row["mflop_per_env_step"] < 10.0 and row["gflop_per_s_in_networks"] > 0
    assert row["batched_steps_per_s"] > 0 and row["dummy_steps_per_s"] > 0 and row["overhead_ratio"] >= 1.0
    assert {"share_generator", "share_decoder", "share_reward_classifier", "share_discriminator"} <= set(row)
    assert "overhead_ratio" in (out / "report.md").read_text()
    bad = run("benchmarks/run.py", "--suite", "speed", "envs=[atari]", f"results_dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "unknown env 'atari'" in bad.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
