"""``benchmarks/run.py --suite speed``: throughput of every latent environment.

A missing checkpoint is replaced by a random-weight network of the same shapes
(:mod:`benchmarks.speed_stand_ins`, ``stand_ins: true``), said in the log, the report and
``summary.json``; an env whose other inputs are missing (data, a package's files) is skipped
with its reason in the report.
"""
import logging
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch

from benchmarks.report import write_summary, write_table
from benchmarks.speed import measure_env
from benchmarks.speed_report import device_info, write_speed_report
from benchmarks.speed_stand_ins import stand_in_missing
from configs import load_config
from configs.schema import RLConfig
from rl.builders import get_env_builder
from rl.train import SECTIONS
from utils.errors import MissingFileError, UserError

log = logging.getLogger(__name__)
ENV_CONFIGS = {"mnist_task": "mnist_task", "face_age": "age_ppo"}
MISSING_INPUTS = (MissingFileError, ImportError)  # what a fresh clone may lack besides checkpoints: skip the env


def check_bench(bench: Dict[str, Any]) -> None:
    threads = bench["num_threads"]
    if not threads or any(int(t) < 1 for t in threads):
        raise UserError(f"num_threads={threads} invalid: expected a non-empty list of ints >= 1")
    for env in bench["envs"]:
        if env not in ENV_CONFIGS:
            raise UserError(f"unknown env '{env}' in envs; expected some of {sorted(ENV_CONFIGS)}")


def build_env(env: str, bench: Dict[str, Any]) -> Tuple[Any, List[Dict[str, str]]]:
    """The env's core factory from its RL config, and the stand-ins it got (config errors raise)."""
    cfg = load_config(ENV_CONFIGS[env], bench["env_overrides"].get(env, []), schema=RLConfig, sections=SECTIONS)
    env_cfg = {k: v for k, v in cfg["env"].items() if k != "name"}
    with tempfile.TemporaryDirectory(prefix="speed_stand_ins_") as folder:
        stand_ins = stand_in_missing(env, env_cfg, Path(folder), bench["seed"]) if bench["stand_ins"] else []
        return get_env_builder(env)(**env_cfg), stand_ins  # the builder has loaded every file when it returns


def measure_rows(env: str, factory, bench: Dict[str, Any], untrained: List[str]) -> List[Dict[str, Any]]:
    """One row per thread count of ``bench['num_threads']``."""
    rows = []
    for n_threads in bench["num_threads"]:
        torch.set_num_threads(int(n_threads))
        result = measure_env(factory, bench["num_envs"], bench["steps"], bench["dummy_steps"], bench["seed"])
        shares = result.pop("share_per_network")
        per_sample = {"batched_us_per_env_step": 1e6 / result["batched_steps_per_s"],
                      "dummy_us_per_env_step": 1e6 / result["dummy_steps_per_s"]}
        rows.append({"env": env, **result, **per_sample, "untrained": "+".join(untrained) or "none",
                     **{f"share_{k}": v for k, v in shares.items()}})
    return rows


def run_speed(bench: Dict[str, Any], out_dir: Path) -> Dict[str, Any]:
    """Measure each env of ``bench['envs']`` (built from its RL config) at each thread count of
    ``bench['num_threads']`` and write report.md, summary.json and table.csv."""
    check_bench(bench)
    device = device_info()  # before any set_num_threads: torch's default thread count
    rows: List[Dict[str, Any]] = []
    stand_ins: List[Dict[str, str]] = []
    skipped: List[Dict[str, str]] = []
    try:
        for env in bench["envs"]:
            try:
                factory, env_stand_ins = build_env(env, bench)
            except MISSING_INPUTS as err:
                log.warning("speed suite: skipping env %s: %s", env, err)
                skipped.append({"env": env, "reason": f"{type(err).__name__}: {err}"})
                continue
            stand_ins += env_stand_ins
            rows += measure_rows(env, factory, bench, [s["module"] for s in env_stand_ins])
    finally:
        torch.set_num_threads(device["torch_default_threads"])
    if not rows:
        reasons = "; ".join(f"{s['env']}: {s['reason']}" for s in skipped)
        raise UserError(f"speed suite: no env could be built: {reasons}")
    summary = {"suite": "speed", "device": device, "stand_ins": stand_ins, "skipped": skipped, "rows": rows}
    write_table(rows, out_dir / "table.csv")
    write_summary(summary, out_dir / "summary.json")
    write_speed_report(bench, summary, out_dir / "report.md")
    return summary
