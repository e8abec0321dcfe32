"""``benchmarks/run.py --suite speed``: throughput of every latent environment."""
import os
from pathlib import Path
from typing import Any, Dict, List

import torch

from benchmarks.report import markdown_table, write_summary, write_table
from benchmarks.speed import measure_env
from configs import load_config
from configs.schema import RLConfig
from rl.builders import get_env_builder
from rl.train import SECTIONS
from utils.errors import UserError
from utils.io import atomic_write_text

ENV_CONFIGS = {"mnist_task": "mnist_task", "face_age": "age_ppo"}


def run_speed(bench: Dict[str, Any], out_dir: Path) -> Dict[str, Any]:
    """Measure each env of ``bench['envs']`` (built from its RL config) at each thread count of
    ``bench['num_threads']`` and write the report files."""
    threads = bench["num_threads"]
    if not threads or any(int(t) < 1 for t in threads):
        raise UserError(f"num_threads={threads} invalid: expected a non-empty list of ints >= 1")
    rows: List[Dict[str, Any]] = []
    for env in bench["envs"]:
        if env not in ENV_CONFIGS:
            raise UserError(f"unknown env '{env}' in envs; expected some of {sorted(ENV_CONFIGS)}")
        cfg = load_config(ENV_CONFIGS[env], bench["env_overrides"].get(env, []), schema=RLConfig, sections=SECTIONS)
        factory = get_env_builder(env)(**{k: v for k, v in cfg["env"].items() if k != "name"})
        for n_threads in threads:
            torch.set_num_threads(int(n_threads))
            result = measure_env(factory, bench["num_envs"], bench["steps"], bench["dummy_steps"], bench["seed"])
            shares = result.pop("share_per_network")
            per_sample = {"batched_us_per_env_step": 1e6 / result["batched_steps_per_s"],
                          "dummy_us_per_env_step": 1e6 / result["dummy_steps_per_s"]}
            rows.append({"env": env, **result, **per_sample, **{f"share_{k}": v for k, v in shares.items()}})
    cpu = f"CPU, {os.cpu_count()} cores"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu
    summary = {"suite": "speed", "device": device, "rows": rows}
    write_table(rows, out_dir / "table.csv")
    write_summary(summary, out_dir / "summary.json")
    columns = ["env", "threads", "num_envs", "batched_steps_per_s", "dummy_steps_per_s", "speedup", "step_ms", "forward_ms",
               "overhead_ratio"]
    share_cols = sorted({k for r in rows for k in r if k.startswith("share_")})
    atomic_write_text(out_dir / "report.md", "\n".join([
        "# Speed suite", "", f"Device: {device}. Random actions, {bench['num_envs']} environments.", "",
        "speedup = batched steps/s ÷ DummyVectorEnv steps/s (same networks); overhead_ratio = batched step time ÷ "
        "the time spent inside the networks it calls (target ≤ 1.25). Per env step: the batched step's time "
        "÷ num_envs, against one DummyVectorEnv env step (batch-1 forwards plus per-env Python).", "",
        markdown_table(rows, columns), "",
        markdown_table(rows, ["env", "threads", "batched_us_per_env_step", "dummy_us_per_env_step", "mflop_per_env_step",
                              "gflop_per_s_in_networks"]), "",
        "mflop_per_env_step: FLOPs of the network forwards per env step (torch.utils.flop_counter on the eager "
        "networks); gflop_per_s_in_networks: the rate the batched step sustains inside them. When that rate is near "
        "the CPU's peak, the step is compute-bound and only cheaper networks or more cores make it faster.", "",
        "Share of the batched step spent in each network:", "",
        markdown_table(rows, ["env", "threads", *share_cols]), ""]))
    return summary
