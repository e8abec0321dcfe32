"""Benchmarks of latentnav.

    python benchmarks/run.py --experiment mnist-task [key=value ...]   # experiment B end to end
    python benchmarks/run.py --compare interfacegan [key=value ...]    # experiment A (not built yet)
    python benchmarks/run.py --suite speed [key=value ...]             # env throughput (configs/bench_speed.yaml)

Writes ``benchmarks/results/<stamp>/`` (report.md, summary.json, table.csv, PNG grids) and
prints that folder. Overrides use the config's keys, e.g. ``eval.test_root=../shared/data/mnist``.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from configs import load_config  # noqa: E402
from lightning_modules.runs import new_run_dir, run_cli, save_run_config  # noqa: E402


def run_mnist_task(overrides: List[str]) -> Path:
    from benchmarks.mnist_task import evaluate, train_stages
    from benchmarks.mnist_task_report import write_mnist_task_report
    from configs.schema import BenchMnistTaskConfig

    bench = load_config("bench_mnist_task", overrides, schema=BenchMnistTaskConfig)
    out_dir = new_run_dir(bench["results_dir"], "")
    save_run_config(bench, out_dir)
    start = time.time()
    try:
        runs = train_stages(bench)
        results = evaluate(bench, runs, out_dir)
    except BaseException:
        import shutil
        shutil.rmtree(out_dir, ignore_errors=True)  # no half-written result folder
        raise
    write_mnist_task_report(bench, runs, results, out_dir, wall_s=time.time() - start)
    return out_dir


def run_speed_suite(overrides: List[str]) -> Path:
    from benchmarks.speed_suite import run_speed
    from configs.schema import BenchSpeedConfig

    bench = load_config("bench_speed", overrides, schema=BenchSpeedConfig)
    out_dir = new_run_dir(bench["results_dir"], "")
    save_run_config(bench, out_dir)
    try:
        run_speed(bench, out_dir)
    except BaseException:
        import shutil
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return out_dir


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--experiment", choices=["mnist-task"])
    group.add_argument("--compare", choices=["interfacegan"])
    group.add_argument("--suite", choices=["speed"])
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    if args.suite == "speed":
        return run_cli(lambda: run_speed_suite(args.overrides))
    if args.experiment != "mnist-task":
        print("error: --compare interfacegan is not built yet (experiment A's comparison is an open issue)",
              file=sys.stderr)
        return 2
    return run_cli(lambda: run_mnist_task(args.overrides))


if __name__ == "__main__":
    sys.exit(main())
