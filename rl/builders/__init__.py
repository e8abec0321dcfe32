"""Environment builders by registry name: frozen modules from checkpoints -> a batched core factory.

A builder returns ``make_core(num_envs, seed) -> core``; ``rl.train`` and the benchmarks call it
for training envs, test envs and the per-env reference path alike. Imports are lazy.
"""
from importlib import import_module
from typing import Callable

import torch
from torch import nn

ENVS = {
    "mnist_task": "rl.builders.mnist_task:mnist_task",
    "face_age": "rl.builders.face_age:face_age",
    "transform": "rl.builders.transform:transform",
}


class MethodModule(nn.Module):
    """Exposes one method of a frozen module as ``forward`` (e.g. the AE's ``decode``)."""

    def __init__(self, owner: nn.Module, method: str):
        super().__init__()
        self.owner, self.method = owner, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.owner, self.method)(x)


def get_env_builder(name: str) -> Callable:
    """The environment builder registered as ``name``."""
    if name not in ENVS:
        raise KeyError(f"unknown environment '{name}'; expected one of {sorted(ENVS)}")
    mod, fn = ENVS[name].split(":")
    return getattr(import_module(mod), fn)
