"""The three environments in gymnasium's registry, so any gymnasium-based tool can make them:

    import gymnasium, rl
    env = gymnasium.make("latentnav/MnistTask-v0", ae_checkpoint=..., gan_checkpoint=..., classifier_checkpoint=...)

The keyword arguments are those of the env's builder (the ``env`` section of its config, without
``name``); ``seed`` seeds the env's row stream (``env.reset(seed=...)`` restarts it too). The env is the
gymnasium view (one row) of the batched core the RL training uses.
"""
import gymnasium

from rl.builders import get_env_builder
from rl.envs.views import SingleEnv

ENV_IDS = {
    "latentnav/MnistTask-v0": "mnist_task",
    "latentnav/FaceAge-v0": "face_age",
    "latentnav/Transform-v0": "transform",
}


def make_single_env(builder: str, seed: int = 0, **kwargs) -> SingleEnv:
    """gymnasium entry point: builder ``builder`` of :data:`rl.builders.ENVS` with ``kwargs``, one env row."""
    return SingleEnv(get_env_builder(builder)(**kwargs)(1, seed))


def register_envs() -> None:
    """Register :data:`ENV_IDS` with gymnasium (idempotent: importing ``rl`` calls it)."""
    for env_id, builder in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="rl.registration:make_single_env", kwargs={"builder": builder})
