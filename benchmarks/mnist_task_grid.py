"""Experiment B as one run or as a ``seeds`` grid, on the configured launcher.

One seed s of a grid is the benchmark with ``seed: s`` and ``seeds: [s]``: its evaluation draws and its agents
are seeded by s, its fit stages are those of every other seed (their configs do not depend on it). So a
grid's ``seed_<s>/`` figures equal those of the same command with ``seeds=[s]``, whichever launcher ran it.
``launcher: local`` runs the seeds one after another; ``launcher: ray`` queues every job of every seed at once.
"""
import copy
import time
from pathlib import Path
from typing import Any, Dict, List

from benchmarks.mnist_task import check_bench, evaluate, train_stages
from benchmarks.mnist_task_report import write_mnist_task_report
from benchmarks.report import markdown_table, write_summary, write_table
from evaluation.transform import mean_std
from utils.errors import UserError
from utils.io import atomic_write_text


def seed_bench(bench: Dict[str, Any], seed: int) -> Dict[str, Any]:
    """The benchmark of one seed of ``bench``'s grid (its export path gets ``.seed<s>`` when the grid has more)."""
    one = copy.deepcopy(bench)
    one["seed"], one["seeds"] = seed, [seed]
    export = bench["eval"]["export"]
    if export is not None and len(bench["seeds"]) > 1:
        path = Path(export)
        one["eval"]["export"] = str(path.with_name(f"{path.stem}.seed{seed}{path.suffix}"))
    return one


def _train_and_evaluate(benches: List[Dict[str, Any]], out_dirs: List[Path]) -> List[tuple]:
    """Per benchmark ``(stages, results, wall seconds)``; under Ray every seed's wall time is the whole grid's."""
    from benchmarks.mnist_task_overlap import train_and_evaluate_all

    start = time.time()
    if benches[0]["launcher"] == "ray":
        done = train_and_evaluate_all(benches, out_dirs)
        return [(*one, time.time() - start) for one in done]
    out = []
    for bench, out_dir in zip(benches, out_dirs):  # one seed after another
        start = time.time()
        if bench["schedule"] == "overlap":  # not from the paper: the same stages, overlapped in worker processes
            stages, results = train_and_evaluate_all([bench], [out_dir])[0]
        else:
            stages = train_stages(bench)
            results = evaluate(bench, {key: stage.run for key, stage in stages.items()}, out_dir)
        out.append((stages, results, time.time() - start))
    return out


def run_mnist_task(bench: Dict[str, Any], out_dir: Path) -> None:
    """Train what is missing, evaluate, and write the report(s) into ``out_dir`` (per seed in ``seed_<s>/``)."""
    start = time.time()
    seeds = bench["seeds"]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds={seeds} invalid: expected distinct seeds")
    benches = [seed_bench(bench, s) for s in seeds] or [bench]
    for one in benches:
        check_bench(one)
    out_dirs = [out_dir / f"seed_{s}" for s in seeds] or [out_dir]
    for folder in out_dirs:
        folder.mkdir(exist_ok=True)
    summaries = []
    for one, folder, (stages, results, wall) in zip(benches, out_dirs, _train_and_evaluate(benches, out_dirs)):
        runs = {key: stage.run for key, stage in stages.items()}
        walls = {key: stage.wall_s for key, stage in stages.items() if stage.wall_s is not None}
        summaries.append(write_mnist_task_report(one, runs, results, folder, wall_s=wall, stage_wall_s=walls))
    if seeds:
        write_grid_report(bench, summaries, out_dir, wall_s=time.time() - start)


def grid_rows(summaries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (task set, input): judged and reward-classifier accuracy, mean ± std over the seeds, and
    each seed's judged accuracy."""
    rows = []
    for spec, per_set in summaries[0]["task_sets"].items():
        for setting in per_set:
            judged = [s["task_sets"][spec][setting]["judge_acc"] for s in summaries]
            reward = [s["task_sets"][spec][setting]["reward_acc"] for s in summaries]
            (jm, js), (rm, _) = mean_std(judged), mean_std(reward)
            rows.append({"task_set": spec, "input": setting, "seeds": len(summaries), "judge_acc_mean": jm,
                         "judge_acc_std": js, "reward_classifier_acc_mean": rm, "gap_mean": rm - jm,
                         **{f"judge_acc_seed{s['seed']}": v for s, v in zip(summaries, judged)}})
    return rows


def write_grid_report(bench: Dict[str, Any], summaries: List[Dict[str, Any]], out_dir: Path, wall_s: float) -> None:
    """The grid's report.md / summary.json / table.csv: mean ± std over seeds; per-seed reports in ``seed_<s>/``."""
    rows = grid_rows(summaries)
    write_table(rows, out_dir / "table.csv")
    write_summary({"experiment": "mnist-task", "seeds": bench["seeds"], "launcher": bench["launcher"],
                   "wall_s": round(wall_s, 1), "rows": rows,
                   "per_seed": {str(s["seed"]): f"seed_{s['seed']}/summary.json" for s in summaries}},
                  out_dir / "summary.json")
    per_seed = [c for c in rows[0] if c.startswith("judge_acc_seed")]
    atomic_write_text(out_dir / "report.md", "\n".join([
        "# Experiment B over seeds", "",
        f"Seeds {bench['seeds']} (each seeds its agents and its evaluation draws; the fit stages are shared), "
        f"launcher {bench['launcher']}, whole grid {wall_s / 60:.1f} min. Mean ± std (population std, as everywhere in the suite) over the seeds; "
        "each seed's full report is in `seed_<s>/report.md`.", "",
        markdown_table(rows, ["task_set", "input", "seeds", "judge_acc_mean", "judge_acc_std",
                              "reward_classifier_acc_mean", "gap_mean", *per_seed]), "",
        *[f"- seed {s['seed']}: [report](seed_{s['seed']}/report.md)" for s in summaries], ""]))
