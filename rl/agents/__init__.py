"""The agent table: ``name -> AgentSpec`` (hyper-parameter dataclass, build, act, on/off-policy).

    build_algorithm("td3", obs_dim, act_dim, action_bound, **hparams)   # any name of AGENTS

Adding an agent is one entry here plus its module (a params dataclass, ``build`` and ``act``);
training, saving, loading, resuming and the config's ``agent`` section then work for it unchanged.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from tianshou.algorithm import Algorithm
from tianshou.algorithm.algorithm_base import Policy

from rl.agents import ppo, sac, td3, transform_pg
from rl.agents.base import AgentSpec, map_action, spaces
from utils.errors import MissingFileError, UnknownNameError, UserError
from utils.io import atomic_torch_save

AGENTS: dict[str, AgentSpec] = {
    "td3": td3.AGENT,
    "ppo": ppo.AGENT,
    "sac": sac.AGENT,
    "transform_pg": transform_pg.AGENT,
}
POLICY_FILE = "policy.pt"
_FORMAT = "latentnav-policy/1"


def agent_spec(name: str) -> AgentSpec:
    """The table entry of ``name`` (case-insensitive); an unknown name is a one-line error."""
    key = str(name).lower()
    if key not in AGENTS:
        raise UnknownNameError(f"unknown agent '{name}'; expected one of {sorted(AGENTS)}")
    return AGENTS[key]


def make_params(name: str, hparams: dict[str, Any]) -> Any:
    """The agent's params dataclass from plain values (unknown keys are a one-line error)."""
    cls = agent_spec(name).params
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise UnknownNameError(f"unknown {str(name).lower()} hyper-parameter(s) {unknown}: allowed {sorted(allowed)}")
    return cls(**hparams)


def build_algorithm(name: str, obs_dim: int, act_dim: int, action_bound: float, /, *,
                    device: str | torch.device = "cpu", **hparams: Any) -> Algorithm:
    """Build agent ``name`` of :data:`AGENTS` for an env with these widths and action box.

    Args:
        name: a key of :data:`AGENTS` (case-insensitive).
        obs_dim, act_dim: observation width O and action width A.
        action_bound: the env's action box is ``[-b, b]^A``.
        device: where its networks (and their optimizers' state) live; built on the CPU (the same initial
            weights on every device for a seed), then moved.
        **hparams: fields of the agent's params dataclass (unknown keys raise ``KeyError``).
    Returns:
        The Tianshou algorithm; ``algorithm.latentnav_spec`` records how to rebuild it.
    """
    params = make_params(name, hparams)
    obs_space, act_space = spaces(obs_dim, act_dim, float(action_bound))
    algorithm = agent_spec(name).build(params, obs_space, act_space).to(device)
    algorithm.latentnav_spec = {"name": str(name).lower(), "obs_dim": int(obs_dim), "act_dim": int(act_dim),
                                "action_bound": float(action_bound), "hparams": dataclasses.asdict(params)}
    algorithm.policy.latentnav_spec = algorithm.latentnav_spec
    return algorithm


def prepare(algorithm: Algorithm) -> None:
    """The agent's one-off set-up of a fresh training run (e.g. pretrained weights); a no-op for most."""
    spec = algorithm.latentnav_spec
    entry = agent_spec(spec["name"])
    if entry.prepare is not None:
        entry.prepare(algorithm, entry.params(**spec["hparams"]))


def save_policy(algorithm: Algorithm, path: str | os.PathLike) -> Path:
    """Atomically write the policy weights plus the builder spec to ``path``."""
    spec = getattr(algorithm, "latentnav_spec", None)
    if spec is None:
        raise ValueError("algorithm was not made by build_algorithm: no latentnav_spec to save")
    weights = {k: v.detach().cpu() for k, v in algorithm.policy.state_dict().items()}
    atomic_torch_save({"format": _FORMAT, **spec, "hparams": dict(spec["hparams"]), "state_dict": weights}, Path(path))
    return Path(path)


def load_policy(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Policy:
    """Rebuild a saved policy (file or run folder holding ``policy.pt``), in eval mode, on ``map_location``."""
    path = Path(path)
    if path.is_dir():
        path = path / POLICY_FILE
    if not path.is_file():
        raise MissingFileError(f"no policy file at {path}: expected a {POLICY_FILE} or run folder")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise UserError(f"{path} is not a latentnav policy file (format {_FORMAT})")
    algorithm = build_algorithm(payload["name"], payload["obs_dim"], payload["act_dim"],
                                payload["action_bound"], device=map_location, **payload["hparams"])
    policy = algorithm.policy
    policy.load_state_dict(payload["state_dict"])
    return policy.eval()


def act(algorithm_or_policy: Algorithm | Policy, obs_NO: torch.Tensor) -> torch.Tensor:
    """Deterministic actions (no exploration noise; Gaussian policies use their mode) for a batch.

    Args:
        algorithm_or_policy: an algorithm from :func:`build_algorithm` or its (loaded) policy.
        obs_NO: N×O observations (any device).
    Returns:
        N×A float actions in the env's box, on ``obs_NO``'s device.
    """
    policy = algorithm_or_policy.policy if isinstance(algorithm_or_policy, Algorithm) else algorithm_or_policy
    spec = getattr(policy, "latentnav_spec", None)
    if spec is None:
        raise ValueError(f"act() needs a policy made by build_algorithm or load_policy, got {type(policy).__name__}")
    device = next(policy.parameters()).device
    obs = torch.as_tensor(obs_NO, dtype=torch.float32, device=device)
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad():
            raw = agent_spec(spec["name"]).act(policy, obs)
    finally:
        policy.train(was_training)
    return map_action(policy, raw).to(torch.as_tensor(obs_NO).device)
