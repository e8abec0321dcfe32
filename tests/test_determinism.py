"""Same seed, same CPU results: fit, rl.train and the mnist-task benchmark, each run twice."""
import json
from pathlib import Path

import torch

from benchmarks.run import main as bench_main
from configs import load_config
from configs.schema import RLConfig
from lightning_modules.fit import SECTIONS as FIT_SECTIONS
from lightning_modules.fit import fit
from rl.train import SECTIONS as RL_SECTIONS
from rl.train import train_agent
from tests.conftest import FAST_TRAINER, tiny_agent_overrides


def same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


def test_fit_twice_gives_identical_weights_and_metrics(mnist_stage_runs, tmp_path):
    overrides = [*FAST_TRAINER, "trainer.max_epochs=2", "data.source=idx", f"data.root={mnist_stage_runs['idx']}",
                 "data.batch_size=16", "seed=3"]
    runs = [fit(load_config("latent_gan", [*overrides, f"ae_checkpoint={mnist_stage_runs['autoencoder']}",
                                           f"out_dir={tmp_path / str(i)}"], sections=FIT_SECTIONS)) for i in range(2)]
    ckpts = [torch.load(r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for r in runs]
    same_tensors(*ckpts)
    metrics = [json.loads((r / "test_metrics.json").read_text())["metrics"] for r in runs]
    assert metrics[0] == metrics[1] and metrics[0]
    other = fit(load_config("latent_gan", [*overrides, "seed=4", f"ae_checkpoint={mnist_stage_runs['autoencoder']}",
                                           f"out_dir={tmp_path / 'other'}"], sections=FIT_SECTIONS))
    differs = torch.load(other / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert any(not torch.equal(differs[k], ckpts[0][k]) for k in differs)  # the seed matters


def test_rl_train_twice_gives_identical_policies(mnist_stage_runs, tmp_path):
    def run(i, *extra):
        cfg = load_config("mnist_task", [*tiny_agent_overrides(mnist_stage_runs), f"out_dir={tmp_path / str(i)}",
                                         *extra], schema=RLConfig, sections=RL_SECTIONS)
        run_dir = train_agent(cfg)
        return torch.load(run_dir / "policy.pt", weights_only=True), json.loads(
            (run_dir / "train_summary.json").read_text())

    (p0, s0), (p1, s1) = run(0), run(1)
    same_tensors(p0["state_dict"], p1["state_dict"])
    assert s0["best_reward"] == s1["best_reward"] and s0["env_steps"] == s1["env_steps"]
    p2, _ = run(2, "seed=1")
    assert any(not torch.equal(p2["state_dict"][k], p0["state_dict"][k]) for k in p0["state_dict"])


def test_mnist_task_benchmark_twice_gives_identical_figures(mnist_stage_runs, tmp_path, capsys):
    runs = mnist_stage_runs
    stages = [f"stages.{k}={runs[k]}" for k in ("autoencoder", "latent_gan", "classifier", "judge")]
    agent = "[" + ",".join(f"'{o}'" for o in tiny_agent_overrides(runs) if not o.startswith("env.")) + "]"
    summaries = []
    for i in range(2):  # each trains its own agents (separate runs_dir): one after another, then side by side
        code = bench_main(["--experiment", "mnist-task", *stages, f"overrides.agent={agent}",
                           f"runs_dir={tmp_path / f'runs{i}'}", f"results_dir={tmp_path / f'results{i}'}",
                           f"eval.test_root={runs['idx']}", "eval.max_digits=12", "eval.task_sets=['+1','-1']",
                           f"parallel_agents={i + 1}"])
        assert code == 0, capsys.readouterr().err[-2000:]
        out = Path(capsys.readouterr().out.strip().splitlines()[-1])
        summary = json.loads((out / "summary.json").read_text())
        summaries.append({k: v for k, v in summary.items() if "wall" not in k and k not in ("runs", "config")})
    assert summaries[0] == summaries[1]
    assert summaries[0]["task_sets"]["+1"]["clean"]["n_digits"] == 12
    assert set(summaries[0]["task_sets"]) == {"+1", "-1"}
