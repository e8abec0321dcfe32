"""Environment throughput: batched core vs DummyVectorEnv, and step time vs bare forwards.

Each network inside a core is wrapped by :class:`Timed`, so the "bare forward" time is exactly
the forward passes a batched step contains; the overhead ratio is step time / that time.
"""
import time
from typing import Any, Callable, Dict

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rl.envs.views import BatchedVectorEnv, make_dummy_vector_env


class Timed(nn.Module):
    """Forwards to ``inner`` and adds the wall seconds of each call to ``seconds`` and its batch size to
    ``rows`` (keeps the last input, for counting FLOPs per row)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.seconds, self.calls, self.rows, self.last_input = inner, 0.0, 0, 0, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.inner(x)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.rows += len(x)
        if len(x):
            self.last_input = x
        return out


def count_flops(net: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward of ``net`` on ``x`` (the eager original of a frozen copy: fused ops are not counted)."""
    net = getattr(net, "original", net)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x.clone())
    return int(counter.get_total_flops())


def _drive(venv, steps: int, seed: int, on_start: Callable[[], None] = lambda: None) -> float:
    """Random-action steps through a Tianshou vector env (resetting ended envs, as the Collector does); seconds.

    ``on_start`` runs after the initial reset, right before the clock starts.
    """
    rng = np.random.default_rng(seed)
    space = venv.get_env_attr("action_space", 0)[0]
    venv.reset()
    on_start()
    start = time.perf_counter()
    for _ in range(steps):
        actions = rng.uniform(space.low, space.high, size=(venv.env_num, space.shape[0])).astype(np.float32)
        _, _, term, trunc, _ = venv.step(actions)
        ended = np.flatnonzero(term | trunc)
        if len(ended):
            venv.reset(ended)
    return time.perf_counter() - start


def measure_env(make_core: Callable[[int, int], Any], num_envs: int = 64, steps: int = 20,
                dummy_steps: int = 5, seed: int = 0) -> Dict[str, Any]:
    """Steps/s batched vs DummyVectorEnv, per-network seconds and the overhead ratio of one env."""
    core = make_core(num_envs, seed)
    timers = {name: Timed(net) for name, net in core.nets.items()}
    core.nets.update(timers)
    batched = BatchedVectorEnv(core)
    _drive(batched, 2, seed)  # warm-up: first calls allocate

    def zero_timers() -> None:
        for t in timers.values():
            t.seconds, t.calls, t.rows = 0.0, 0, 0
    batched_s = _drive(batched, steps, seed, zero_timers)
    net_s = {name: t.seconds for name, t in timers.items()}
    # FLOPs of the networks' forwards per batched step: the work a batched step cannot avoid. Calls differ in
    # batch size (a reset runs the networks on the reset rows only): FLOPs per row of the last input × rows run
    flops = sum(count_flops(t.inner, t.last_input) / len(t.last_input) * t.rows / steps
                for t in timers.values() if t.calls)
    dummy_s = _drive(make_dummy_vector_env(make_core, num_envs, seed), dummy_steps, seed)
    batched_sps = steps * num_envs / batched_s
    dummy_sps = dummy_steps * num_envs / dummy_s
    forward_s = sum(net_s.values())
    return {"mflop_per_env_step": flops / num_envs / 1e6, "gflop_per_s_in_networks": flops * steps / forward_s / 1e9,
            "num_envs": num_envs, "batched_steps_per_s": batched_sps, "dummy_steps_per_s": dummy_sps,
            "speedup": batched_sps / dummy_sps, "step_ms": 1000 * batched_s / steps,
            "forward_ms": 1000 * forward_s / steps, "overhead_ratio": batched_s / forward_s,
            "share_per_network": {k: v / batched_s for k, v in net_s.items()},
            "threads": torch.get_num_threads(), "device": str(core.device)}
