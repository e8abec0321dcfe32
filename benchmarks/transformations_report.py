"""report.md / summary.json / table.csv / curves.png of the transformations benchmark (experiment C)."""
import csv
import json
import logging
from pathlib import Path
from typing import Any, Dict, List

from benchmarks.report import markdown_table, pyplot, save_figure, write_summary, write_table
from evaluation.transform import mean_std
from utils.io import atomic_write_text
from utils.runs import run_info

log = logging.getLogger(__name__)
METHODS = ("transform_pg", "transform_rnn", "pixel_interp", "ae_interp")
SCORES = ("return", "final_l2", "final_ae", "realism", "judge_realism", "final_realism", "train_wall_s")
BETTER = {"return": max, "final_l2": min, "final_ae": min, "realism": max, "judge_realism": max}


def aggregate(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per method: mean and std over seeds of every score (references: one deterministic row)."""
    out = []
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        agg: Dict[str, Any] = {"method": method, "seeds": len(mine) if mine[0]["seed"] is not None else 0}
        for key in SCORES:
            if key in mine[0]:
                agg[f"{key}_mean"], agg[f"{key}_std"] = mean_std([r[key] for r in mine])
        out.append(agg)
    return out


def winners(table: List[Dict[str, Any]], learned_only: bool = False) -> Dict[str, str]:
    """The best method (by mean) on each measure, among all methods or the learned ones only."""
    rows = [r for r in table if r["seeds"] or not learned_only]
    return {key: pick([r for r in rows if f"{key}_mean" in r], key=lambda r: r[f"{key}_mean"])["method"]
            for key, pick in BETTER.items() if any(f"{key}_mean" in r for r in rows)}


def _curves(runs: Dict[str, Any]) -> Dict[str, Dict[int, Dict[str, list]]]:
    """Per learned method and seed: training and held-out return vs episodes seen."""
    curves: Dict[str, Dict[int, Dict[str, list]]] = {"transform_pg": {}, "transform_rnn": {}}
    for seed, run in runs["transform_pg"].items():
        rows = json.loads((Path(run) / "curve.json").read_text())
        curves["transform_pg"][seed] = {
            "train": [(r["episodes"], r["train_return"]) for r in rows if "train_return" in r],
            "heldout": [(r["episodes"], r["test_return"]) for r in rows if "test_return" in r]}
    for seed, run in runs["transform_rnn"].items():
        batch = run_info(run)["data"]["batch_size"]
        with open(Path(run) / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        curves["transform_rnn"][seed] = {
            "train": [((int(r["step"]) + 1) * batch, float(r["train/return"])) for r in rows if r.get("train/return")],
            "heldout": [((int(r["step"]) + 1) * batch, float(r["val/return"])) for r in rows if r.get("val/return")]}
    return curves


def plot_curves(runs: Dict[str, Any], references: Dict[str, float], path: Path) -> bool:
    """curves.png: training return (left) and held-out return (right) vs episodes, every seed; False without matplotlib."""
    plt = pyplot("curves.png")
    if plt is None:
        return False
    colors = {"transform_pg": "tab:blue", "transform_rnn": "tab:red"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for method, per_seed in _curves(runs).items():
        for i, (seed, curve) in enumerate(sorted(per_seed.items())):
            for ax, key in zip(axes, ("train", "heldout")):
                if curve[key]:
                    x, y = zip(*curve[key])
                    ax.plot(x, y, color=colors[method], alpha=0.75, lw=1, marker="o" if key == "heldout" else None,
                            ms=3, label=method if i == 0 else None)
    for (name, value), style in zip(references.items(), (":", "--")):
        axes[1].axhline(value, color="gray", ls=style, lw=1, label=f"{name} (test pairs)")
    axes[0].set_title("training return (RL: sampled episodes; RNN: −loss of its batch)")
    axes[1].set_title("held-out return (RL: test episodes; RNN: validation pairs)")
    for ax in axes:
        ax.set_xlabel("episodes (source/goal pairs) seen")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("return (same rewards for both)")
    axes[1].legend(fontsize=8)
    save_figure(fig, path)
    return True


def _pm(row: Dict[str, Any], key: str) -> str:
    if f"{key}_mean" not in row:
        return ""
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return f"{mean:.3f} ± {std:.3f}" if row["seeds"] > 1 else f"{mean:.3f}"


def write_transformations_report(bench: Dict[str, Any], runs: Dict[str, Any], results: Dict[str, Any], out_dir: Path,
                                 wall_s: float, stage_wall_s: Dict[str, float]) -> None:
    """Write table.csv, summary.json, curves.png and report.md (atomically) into ``out_dir``;
    ``stage_wall_s``: the stages trained here -> seconds."""
    table = aggregate(results["rows"])
    write_table(table, out_dir / "table.csv")
    refs = {r["method"]: r["return_mean"] for r in table if r["seeds"] == 0}
    has_curves = plot_curves(runs, refs, out_dir / "curves.png")
    best, best_learned = winners(table), winners(table, learned_only=True)
    runs_str = {k: ({s: str(p) for s, p in v.items()} if isinstance(v, dict) else str(v)) for k, v in runs.items()}
    write_summary({"experiment": "transformations", "wall_s": round(wall_s, 1), "stage_wall_s": stage_wall_s,
                   "runs": runs_str, "objective": bench["objective"], "winners": best,
                   "winners_learned": best_learned, "table": table, **results,
                   "roles": {"reward_discriminator": runs_str["discriminator"],
                             "judge_discriminator": runs_str["judge_discriminator"],
                             "note": "judge_realism comes from a discriminator no method trained against"}},
                  out_dir / "summary.json")
    shown = [{"method": r["method"], "seeds": r["seeds"] or "-", **{k: _pm(r, k) for k in SCORES}} for r in table]
    obj = bench["objective"]
    text = [
        "# Experiment C: learned transformations (policy + transformer by REINFORCE vs an RNN by BPTT)", "",
        f"Test data: {results['test_data']}; {results['n_pairs']} (source, goal) pairs, goals from "
        f"'{results['goal_class']}' classes; {obj['steps']} steps.",
        f"Rewards (shared by every method): {obj['realism_weight']} · {obj['realism_score']} D(x_t) per step − "
        f"{obj['distance_weight']} · {obj['distance']} distance at the last step (step penalty {obj['step_penalty']}, "
        f"max-step penalty {obj['max_step_penalty']}, goal tolerance {obj['goal_tolerance']}).",
        f"Learned methods: mean ± std (population) over seeds {bench['seeds']}. Whole benchmark wall time: {wall_s / 60:.1f} min "
        f"(stages trained here: {stage_wall_s or 'none'}).", "",
        "Columns: return = sum of the shared rewards (higher is better); final_l2 = ‖x_T − x_g‖₂ over pixels; "
        "final_ae = RMS of the standardised AE-code difference; realism = mean p(real) of x_1..x_T by the reward's "
        "discriminator; judge_realism = the same by an independent discriminator (another seed and width) that no "
        "method trained against; train_wall_s = training time of one seed.", "",
        markdown_table(shown, ["method", "seeds", *SCORES]), "",
        "Best by mean: " + ", ".join(f"{k}: **{v}**" for k, v in best.items()) + "; among the learned methods: "
        + ", ".join(f"{k}: **{v}**" for k, v in best_learned.items()) + ". The pixel interpolation ends on the goal "
        "by construction (final distances 0); the AE interpolation ends on the goal's reconstruction.", "",
        "## Per seed", "",
        markdown_table([{**r, "seed": "-" if r["seed"] is None else r["seed"]} for r in results["rows"]],
                       ["method", "seed", *SCORES]), "",
        "## Curves", "",
        "![curves](curves.png)" if has_curves else "(matplotlib not installed: no curves.png)", "",
        "## Strips (rows: test pairs; columns: x_s, x_1 .. x_T, x_g; learned methods: first seed)", "",
        *[f"### {m}\n\n![{m}](strip_{m}.png)\n" for m in METHODS if (out_dir / f"strip_{m}.png").is_file()],
        "## Runs used", "",
        *[f"- {k}: `{v}`" for k, v in runs_str.items()], "",
    ]
    atomic_write_text(out_dir / "report.md", "\n".join(text))
