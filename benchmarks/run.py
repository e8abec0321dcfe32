"""Benchmarks of latentnav.

    python benchmarks/run.py --experiment mnist-task [key=value ...]   # experiment B end to end (best measured)
    python benchmarks/run.py --experiment mnist-task --config bench_mnist_task_paper   # the paper's stages
    python benchmarks/run.py --experiment mnist-task launcher=ray "seeds=[0,1,2]"     # a seed grid on Ray
    python benchmarks/run.py --experiment transformations [key=value ...]  # experiment C: RL π+T vs BPTT RNN
    python benchmarks/run.py --compare interfacegan [key=value ...]    # experiment A: RL vs InterfaceGAN
    python benchmarks/run.py --compare interfacegan --quick            # its ~2-minute smoke version
    python benchmarks/run.py --suite speed [key=value ...]             # env throughput (configs/bench_speed.yaml)

Writes ``benchmarks/results/<stamp>/`` (report.md, summary.json, table.csv, PNG grids) and
prints that folder. Overrides use the config's keys, e.g. ``eval.test_root=../shared/data/mnist``.
"""
import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from configs import load_config  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.errors import Interrupted  # noqa: E402
from utils.runs import check_output_dir, new_run_dir, save_run_config  # noqa: E402


def in_result_folder(config: str, schema: type, overrides: List[str], job: Callable[[dict, Path], None]) -> Path:
    """Load ``config``, run ``job(bench, out_dir)`` in a fresh result folder; remove the folder if it fails.

    The output folders (``results_dir``, ``runs_dir``) are checked before anything is written."""
    bench = load_config(config, overrides, schema=schema)
    for key in ("results_dir", "runs_dir"):
        if key in bench:
            check_output_dir(bench[key], key)
    out_dir = new_run_dir(bench["results_dir"], "")
    save_run_config(bench, out_dir)
    try:
        job(bench, out_dir)
    except BaseException as err:
        shutil.rmtree(out_dir, ignore_errors=True)  # no half-written result folder
        if isinstance(err, Interrupted):
            err.notes.append("finished stages are kept and reused, interrupted agents resume from their "
                             "train_state.pt: run the same command again to continue")
        raise
    return out_dir


def run_mnist_task(bench: dict, out_dir: Path) -> None:
    from benchmarks.mnist_task_grid import run_mnist_task as run

    run(bench, out_dir)


def run_compare_interfacegan(bench: dict, out_dir: Path) -> None:
    from benchmarks.interfacegan import compare
    from benchmarks.interfacegan_report import write_compare_report

    start = time.time()
    results = compare(bench)
    write_compare_report(bench, results, out_dir, wall_s=time.time() - start)


def run_transformations(bench: dict, out_dir: Path) -> None:
    from benchmarks.transformations import check_bench, run_folders, stage_walls, train_and_evaluate
    from benchmarks.transformations_report import write_transformations_report

    start = time.time()
    check_bench(bench)
    stages, results = train_and_evaluate(bench, out_dir)
    runs = run_folders(stages)
    write_transformations_report(bench, runs, results, out_dir, wall_s=time.time() - start,
                                 stage_wall_s=stage_walls(stages))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--experiment", choices=["mnist-task", "transformations"])
    group.add_argument("--compare", choices=["interfacegan"])
    group.add_argument("--suite", choices=["speed"])
    parser.add_argument("--quick", action="store_true", help="~2-minute smoke version (--compare interfacegan)")
    parser.add_argument("--config", metavar="NAME_OR_YAML",
                        help="benchmark config instead of the default (--experiment mnist-task: bench_mnist_task; "
                             "bench_mnist_task_paper is the paper's configuration)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    if args.quick and args.compare != "interfacegan":
        parser.error("--quick is implemented for --compare interfacegan only")
    if args.config is not None and args.experiment != "mnist-task":
        parser.error("--config is implemented for --experiment mnist-task only")
    if args.compare == "interfacegan":
        from benchmarks.interfacegan import QUICK
        from configs.bench_schema import BenchInterfaceGANConfig
        overrides = [*QUICK, *args.overrides] if args.quick else args.overrides
        return run_cli(lambda: in_result_folder("bench_interfacegan", BenchInterfaceGANConfig, overrides,
                                                run_compare_interfacegan))
    if args.suite == "speed":
        from benchmarks.speed_suite import run_speed
        from configs.bench_schema import BenchSpeedConfig
        return run_cli(lambda: in_result_folder("bench_speed", BenchSpeedConfig, args.overrides, run_speed))
    if args.experiment == "transformations":
        from configs.bench_schema import BenchTransformationsConfig
        return run_cli(lambda: in_result_folder("bench_transformations", BenchTransformationsConfig, args.overrides,
                                                run_transformations))
    from configs.bench_schema import BenchMnistTaskConfig
    return run_cli(lambda: in_result_folder(args.config or "bench_mnist_task", BenchMnistTaskConfig, args.overrides,
                                            run_mnist_task))


if __name__ == "__main__":
    sys.exit(main())
