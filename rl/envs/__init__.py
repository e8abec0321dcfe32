"""RL environments: batched torch cores and the generic gymnasium / Tianshou views on them."""

from rl.envs.core import BatchedCore, RowStreams, row_randint, seeds_for
from rl.envs.face_age import AgeMDP, FaceAgeCore, age_reward, bucket_hits
from rl.envs.mnist_rewards import target_probability, task_reward
from rl.envs.mnist_task import MnistTaskCore
from rl.envs.transform import TransformCore
from rl.envs.views import BatchedVectorEnv, SingleEnv, make_dummy_vector_env

__all__ = [
    "AgeMDP",
    "BatchedCore",
    "BatchedVectorEnv",
    "FaceAgeCore",
    "MnistTaskCore",
    "RowStreams",
    "SingleEnv",
    "TransformCore",
    "age_reward",
    "bucket_hits",
    "make_dummy_vector_env",
    "row_randint",
    "seeds_for",
    "target_probability",
    "task_reward",
]
