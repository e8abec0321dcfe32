"""Environment builders by registry name: frozen modules from checkpoints -> a batched core factory.

A builder returns ``make_core(num_envs, seed) -> core``; ``rl.train`` and the benchmarks call it
for training envs, test envs and the per-env reference path alike. Its keyword arguments are the
config's ``env`` section. Imports are lazy.
"""
import torch
from torch import nn

from utils.registry import Registry

ENVS = Registry("environment", {
    "mnist_task": "rl.builders.mnist_task:mnist_task",
    "face_age": "rl.builders.face_age:face_age",
    "transform": "rl.builders.transform:transform",
})
get_env_builder = ENVS.get


class MethodModule(nn.Module):
    """Exposes one method of a frozen module as ``forward`` (e.g. the AE's ``decode``)."""

    def __init__(self, owner: nn.Module, method: str):
        super().__init__()
        self.owner, self.method = owner, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.owner, self.method)(x)
