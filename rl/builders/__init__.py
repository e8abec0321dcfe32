"""Environment builders by registry name: frozen modules from checkpoints -> a batched core factory.

A builder returns ``make_core(num_envs, seed) -> core``; ``rl.train`` and the benchmarks call it
for training envs, test envs and the per-env reference path alike. Its keyword arguments are the
config's ``env`` section. Imports are lazy.
"""
import logging

import torch
from torch import nn

from utils.registry import Registry

ENVS = Registry("environment", {
    "mnist_task": "rl.builders.mnist_task:mnist_task",
    "face_age": "rl.builders.face_age:face_age",
    "transform": "rl.builders.transform:transform",
})
get_env_builder = ENVS.get
log = logging.getLogger(__name__)


def factory_on(make_core, device: torch.device, env: str = "the env"):
    """``make_core`` (a builder's result) making its cores on ``device``: a factory with ``to(device)``, or a
    core's bound method (e.g. ``core.spawn``) of a core with ``to(device)``; others stay where their builder put
    them, with a warning when that may not be ``device``. On the device the cores already use, nothing changes."""
    device = torch.device(device)
    if callable(getattr(make_core, "to", None)):
        return make_core.to(device)
    owner = getattr(make_core, "__self__", None)
    if owner is not None and callable(getattr(owner, "to", None)):
        return getattr(owner.to(device), make_core.__name__)
    if device.type != "cpu":
        log.warning("%s: its cores cannot be moved (no to(device)): they stay where the builder put them, "
                    "the agent runs on %s", env, device)
    return make_core


class MethodModule(nn.Module):
    """Exposes one method of a frozen module as ``forward`` (e.g. the AE's ``decode``)."""

    def __init__(self, owner: nn.Module, method: str):
        super().__init__()
        self.owner, self.method = owner, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.owner, self.method)(x)
