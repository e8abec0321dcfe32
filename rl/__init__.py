"""RL in the generators' latent spaces: batched env cores and their gymnasium / Tianshou views (``envs``),
env builders from checkpoints (``builders``), the agent table (``agents``), the one training loop
(``loop``) and the command lines ``python -m rl.train`` and ``python -m rl.evaluate``.

Importing this package registers the environments with gymnasium as ``latentnav/<Name>-v0``.
"""
from rl.registration import register_envs

register_envs()
