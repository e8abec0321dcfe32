"""The speed suite's device description and report.md."""
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from benchmarks.report import markdown_table
from utils.io import atomic_write_text

MAIN_COLUMNS = ["env", "threads", "num_envs", "untrained", "batched_steps_per_s", "dummy_steps_per_s", "speedup",
                "step_ms", "forward_ms", "overhead_ratio"]


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else None."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def device_info() -> Dict[str, Any]:
    """Where the suite runs: CPU model, cores, torch's default thread count, a GPU if one is visible."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": cpu_model() or "unknown", "cpu_count": os.cpu_count(), "usable_cores": usable,
            "torch_default_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def device_line(device: Dict[str, Any], rows: List[Dict[str, Any]]) -> str:
    nets_on = ", ".join(sorted({str(r.get("device", "cpu")) for r in rows}))
    gpu = f" A GPU is visible ({device['gpu']}) but unused." if device["gpu"] and "cuda" not in nets_on else ""
    return (f"Device: {device['cpu_model']}, {device['usable_cores']} usable cores (os.cpu_count() = "
            f"{device['cpu_count']}); torch threads per row in the `threads` column (torch's default here: "
            f"{device['torch_default_threads']}); the envs' networks run on {nets_on}.{gpu}")


def stand_in_lines(summary: Dict[str, Any]) -> List[str]:
    """The loud part: untrained stand-ins and skipped envs, first thing after the title."""
    lines = []
    if summary["stand_ins"]:
        lines += ["**UNTRAINED STAND-INS.** These checkpoints do not exist, so random-weight networks of the same "
                  "shapes (the module section of the config that trains each) were timed in their place. The "
                  "throughput figures hold for trained networks of these shapes (the forwards cost the same); the "
                  "rewards and episode ends are meaningless, so where an episode's length depends on them (face_age) "
                  "resets come at another rate than with trained networks:", ""]
        lines += [f"- {s['env']}: `env.{s['key']}` = `{s['missing']}` missing → untrained `{s['module']}`"
                  for s in summary["stand_ins"]]
        lines.append("")
    lines += [f"**Skipped** {s['env']}: {s['reason']}" for s in summary["skipped"]]
    return lines + ([""] if summary["skipped"] else [])


def write_speed_report(bench: Dict[str, Any], summary: Dict[str, Any], path: Path) -> None:
    rows = summary["rows"]
    share_cols = sorted({k for r in rows for k in r if k.startswith("share_")})
    atomic_write_text(path, "\n".join([
        "# Speed suite", "", *stand_in_lines(summary), device_line(summary["device"], rows), "",
        f"Random actions, {bench['num_envs']} environments, {bench['steps']} timed batched steps and "
        f"{bench['dummy_steps']} DummyVectorEnv steps per row.", "",
        "speedup = batched steps/s ÷ DummyVectorEnv steps/s (the same networks, one env per core object). "
        "step_ms: wall time of one batched step (all num_envs envs at once, resets of ended envs included); "
        "forward_ms: the part of it spent inside the networks' forward calls (each network is timed where the "
        "step calls it); overhead_ratio = step_ms ÷ forward_ms, the batched step against the bare forward passes "
        "it contains: 1.0 would mean the env adds nothing around its networks (target ≤ 1.25). Per env step: the "
        "batched step's time ÷ num_envs, against one DummyVectorEnv env step (batch-1 forwards plus per-env "
        "Python). `untrained`: the modules timed as random-weight stand-ins in that row (none: all trained).", "",
        markdown_table(rows, MAIN_COLUMNS), "",
        markdown_table(rows, ["env", "threads", "batched_us_per_env_step", "dummy_us_per_env_step",
                              "mflop_per_env_step", "gflop_per_s_in_networks"]), "",
        "mflop_per_env_step: FLOPs of the network forwards per env step (torch.utils.flop_counter on the eager "
        "networks: each network's FLOPs per row × the rows it ran, resets included); gflop_per_s_in_networks: the "
        "rate the batched step sustains inside them. When that rate is near the CPU's peak, the step is "
        "compute-bound and only cheaper networks or more cores make it faster.", "",
        "Share of the batched step spent in each network:", "",
        markdown_table(rows, ["env", "threads", *share_cols]), ""]))
