"""RL environments: batched torch cores and the generic gymnasium / Tianshou views on them."""

from rl.envs.mnist_task import MnistTaskCore, target_probability, task_reward
from rl.envs.views import (
    BatchedVectorEnv,
    SingleEnv,
    make_dummy_vector_env,
    row_randint,
    seeds_for,
)

__all__ = [
    "BatchedVectorEnv",
    "MnistTaskCore",
    "SingleEnv",
    "make_dummy_vector_env",
    "row_randint",
    "seeds_for",
    "target_probability",
    "task_reward",
]
