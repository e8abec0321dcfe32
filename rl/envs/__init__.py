"""RL environments: batched torch cores and the generic gymnasium / Tianshou views on them."""

from rl.envs.face_age import AgeMDP, FaceAgeCore, age_reward, bucket_hits
from rl.envs.mnist_task import MnistTaskCore, target_probability, task_reward
from rl.envs.views import (
    BatchedVectorEnv,
    SingleEnv,
    make_dummy_vector_env,
    row_randint,
    seeds_for,
)

__all__ = [
    "AgeMDP",
    "BatchedVectorEnv",
    "FaceAgeCore",
    "MnistTaskCore",
    "SingleEnv",
    "age_reward",
    "bucket_hits",
    "make_dummy_vector_env",
    "row_randint",
    "seeds_for",
    "target_probability",
    "task_reward",
]
