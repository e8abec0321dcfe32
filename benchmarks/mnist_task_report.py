"""report.md / summary.json / table.csv of the mnist-task benchmark."""
from pathlib import Path
from typing import Any, Dict

from benchmarks.report import markdown_table, write_summary, write_table
from utils.io import atomic_write_text

PAPER = {"clean": 0.9531, "noisy": 0.8179}  # 2307.13978, + task set, noise level not stated


def _rows(results: Dict[str, Any]):
    rows, per_task = [], []
    for spec, per_set in results["task_sets"].items():
        for setting, s in per_set.items():
            rows.append({"task_set": spec, "input": setting, "noise_std": s["noise_std"], "judge_acc": s["judge_acc"],
                         "reward_classifier_acc": s["reward_acc"], "gap": s["reward_acc"] - s["judge_acc"],
                         "mean_realism_D": s["realism"], "paper_judge_acc": PAPER[setting] if spec == "add:0-9" else ""})
            for name, j, r in zip(s["task_names"], s["judge_acc_per_task"], s["reward_acc_per_task"]):
                per_task.append({"task": name, "input": setting, "judge_acc": j, "reward_classifier_acc": r})
    return rows, per_task


def _configuration(bench: Dict[str, Any]) -> str:
    tuned = {stage: values for stage, values in (bench.get("tuned") or {}).items() if values}
    if not tuned:
        return "Stages: the paper's configuration (no `tuned` overrides)."
    return "Stages: tuned, not from the paper (docs/experiment-b.md): " + "; ".join(
        f"{stage} `{' '.join(values)}`" for stage, values in tuned.items()) + "."


def _coverage(quality: Dict[str, Any]) -> list:
    rows = [{"target_digit": c, "share_judged_c": share, "best_judged_p_c": best}
            for c, (share, best) in enumerate(zip(quality["coverage_share"], quality["coverage_best_judged_p"]))]
    return ["Generator coverage per target digit c, from the same samples: the share judged c with p > "
            f"{quality['threshold']}, and the judge's mean p(c) over the {quality['coverage_top_k']} samples the reward "
            "classifier rates most likely c (low: G rarely draws c, or reward and judge disagree on it).", "",
            markdown_table(rows, ["target_digit", "share_judged_c", "best_judged_p_c"])]


def _pipeline_line(ceiling: Dict[str, Any]) -> str:
    if not ceiling["steps"]:
        return ("Pipeline ceiling: not measured (`eval.pipeline_ceiling_steps=N` trains a policy of the actor's shape "
                "by gradient through the frozen Dec∘G, reward classifier and D, and judges it like the agents).")
    return (f"Pipeline ceiling (not RL: a policy of the actor's shape trained by gradient through the frozen Dec∘G, "
            f"reward classifier and D, {ceiling['steps']} Adam steps, {ceiling['task_set']} set): judged "
            f"{ceiling['clean']:.2%} clean, {ceiling['noisy']:.2%} noisy, in {ceiling['wall_s']:.0f} s.")


def _schedule(bench: Dict[str, Any]) -> str:
    if bench.get("launcher") == "ray":
        return "launcher ray (every job a Ray task" + (f", seeds {bench['seeds']} queued together)" if bench["seeds"] else ")")
    return f"schedule {bench['schedule']}"


def _summary(bench, runs, results, rows, wall_s: float, stage_wall_s: Dict[str, float]) -> Dict[str, Any]:
    return {"experiment": "mnist-task", "seed": bench["seed"], "launcher": bench.get("launcher", "local"),
            "wall_s": round(wall_s, 1), "stage_wall_s": stage_wall_s, "runs": {k: str(v) for k, v in runs.items()},
            "roles": {"reward_classifier": str(runs["classifier"]), "judge": str(runs["judge"]),
                      "note": "the judge (another architecture and seed) never enters the reward"},
            **results, "rows": rows}


def write_mnist_task_report(bench: Dict[str, Any], runs: Dict[str, Path], results: Dict[str, Any], out_dir: Path,
                            wall_s: float, stage_wall_s: Dict[str, float]) -> Dict[str, Any]:
    """Write the three result files (atomically) into ``out_dir``; ``stage_wall_s``: stages trained here -> seconds.
    Returns the summary."""
    rows, per_task = _rows(results)
    write_table(rows, out_dir / "table.csv")
    summary = _summary(bench, runs, results, rows, wall_s, stage_wall_s)
    write_summary(summary, out_dir / "summary.json")
    grids = sorted(p.name for p in out_dir.glob("grid_*.png"))
    text = [
        "# Experiment B: task-driven translation on MNIST",
        "",
        f"Test data: {results['test_data']} ({results['n_digits']} digits × every task of each set).",
        f"Input noise for the 'noisy' rows: N(0, {bench['eval']['noise_std']}²) on [0, 1] pixels, clipped.",
        "Agents: " + ("one per task set, trained on that set alone (as the paper trains on + alone)."
                      if bench["agents"] == "per_task_set" else "one agent trained on the union of the task sets."),
        _configuration(bench),
        f"Whole benchmark wall time: {wall_s / 60:.1f} min, {_schedule(bench)} (stages trained here: "
        f"{stage_wall_s or 'none'}).",
        "",
        "Accuracy = the independent judge says Dec(G(π(obs))) shows op(label, operand) mod 10. The reward",
        "classifier's accuracy on the same outputs is beside it: the gap is how much the agent fools its reward model.",
        "The paper's figures (95.31 % clean, 81.79 % noisy, + task set) come from another MNIST training set",
        "(60,000 digits) and judge: compare with care.",
        "",
        markdown_table(rows, ["task_set", "input", "judge_acc", "reward_classifier_acc", "gap", "mean_realism_D",
                              "paper_judge_acc"]),
        "",
        "l-GAN sample quality (the ceiling a policy starts from): {frac_confident:.1%} of {n} random samples "
        "are judged with p > {threshold}; judged class histogram {hist}.".format(
            **results["lgan_sample_quality"], hist=[round(h, 3) for h in results["lgan_sample_quality"]["class_hist"]]),
        "",
        *_coverage(results["lgan_sample_quality"]),
        "",
        "Recognition ceiling: a supervised MLP (the actor's width) trained with labels on the agent's own episode",
        "pool tells the input digit from its code in {clean:.2%} of the clean and {noisy:.2%} of the noisy test".format(
            **results["recognition_ceiling"]),
        "digits. On the + and − sets a misread input always gives a wrong target, so no policy that reads this",
        "code can be expected to beat these figures.",
        "",
        _pipeline_line(results["pipeline_ceiling"]),
        "",
        "## Per task",
        "",
        markdown_table(per_task, ["task", "input", "judge_acc", "reward_classifier_acc"]),
        "",
        "## Runs used",
        "",
        *[f"- {k}: `{v}`" for k, v in runs.items()],
        "",
        "## Grids (rows: input digit, then the output for each task)",
        "",
        *[f"![{g}]({g})" for g in grids],
        "",
    ]
    atomic_write_text(out_dir / "report.md", "\n".join(text))
    return summary
