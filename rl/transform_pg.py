"""Experiment C's RL path: π and the learned transformer T, both agents, trained by REINFORCE.

    python -m rl.train transform_pg [key=value ...]        # configs/transform_pg.yaml

Each step, π(x_t, x_g, t/T) draws a Gaussian action a ∈ R^d and T(x_t, a) draws the next image
x_{t+1} ~ N(μ_T(x_t, a), σ_T² I) (a 784-d Gaussian action); the environment
(:class:`rl.envs.transform.TransformCore`) clips it to [0, 1] and pays the shared rewards. Both
agents follow the gradient of the same return, ``E[(G_t − V(s_t)) · ∇(log π(a_t) + log T(x_{t+1}))]``,
with a learned baseline V. Sampled images are detached: no gradient crosses from one step to the
next through T (the BPTT baseline, :mod:`lightning_modules.transform_rnn`, does exactly that).

Why REINFORCE in plain torch rather than Tianshou's PPO: the agent here is two stochastic
policies in series whose intermediate action a is not an environment action (Tianshou's actors
have one distribution over the env's action space, and storing a would need a custom buffer);
the episodes have a fixed length T and run in lockstep, so one batched rollout is one tensor of
T×N steps and needs no collector or replay buffer. A learned baseline plus advantage
normalisation is the variance reduction PPO would also use; PPO's clipping mainly pays off when
re-using a batch for several updates, which we do not.

Writes, besides ``config.yaml``: ``policy.pt`` (π, T and V at the best test return),
``curve.json`` (per update: episodes, wall time, training return, ...; test rows every epoch),
TensorBoard events, and ``train_summary.json`` (written by the caller).
"""
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn
from torch.distributions import Independent, Normal
from torch.utils.tensorboard import SummaryWriter

from lightning_modules.nets.transform import PolicyNet, TransformNet, ValueNet, init_from_autoencoder, split_obs, unroll
from lightning_modules.runs import atomic_torch_save, atomic_write_text, load_module, new_run_dir, save_run_config
from rl.agents import POLICY_FILE, seed_everything
from rl.builders import get_env_builder

log = logging.getLogger(__name__)
_FORMAT = "latentnav-transform-agents/1"


class TransformAgents(nn.Module):
    """π, T and the baseline V; the signature is the ``agent`` section of configs/transform_pg.yaml.

    Args:
        code_dim, hidden, action_bound, code_scale: π's action a ∈ [-b, b]^code_dim (tanh-bounded
            mean) moves T's code of x_t by ``code_scale · a`` (:mod:`lightning_modules.nets.transform`).
        init_autoencoder: an AE checkpoint/run folder whose encoder/decoder weights π and T start
            from (:func:`train_run` copies them; None: random init).
        width, hidden: conv width of V and MLP size of π and V.
        init_log_std: π's initial log std. init_pixel_log_std / min_pixel_log_std: T's pixel
            noise (learned, a scalar) starts at and never falls below these.
        lr_policy, lr_transformer, lr_value: Adam learning rates. gamma: discount.
        ent_coef: entropy bonus on π. max_grad_norm: clipping per net. normalize_advantages: per batch.
    """

    def __init__(self, code_dim: int = 32, action_bound: float = 2.0, code_scale: float = 10.0,
                 init_autoencoder: Optional[str] = None, width: int = 16, hidden: int = 128,
                 init_log_std: float = -0.5, init_pixel_log_std: float = -3.0, min_pixel_log_std: float = -5.0,
                 lr_policy: float = 3e-4, lr_transformer: float = 1e-4, lr_value: float = 1e-3, gamma: float = 1.0,
                 ent_coef: float = 0.0, max_grad_norm: float = 1.0, normalize_advantages: bool = True):
        super().__init__()
        for name, value in (("code_dim", code_dim), ("width", width), ("hidden", hidden)):
            if int(value) != value or value < 1:
                raise ValueError(f"agent.{name}={value} invalid: expected an int >= 1")
        for name, value in (("action_bound", action_bound), ("code_scale", code_scale), ("lr_policy", lr_policy),
                            ("lr_transformer", lr_transformer), ("lr_value", lr_value), ("max_grad_norm", max_grad_norm)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"agent.{name}={value} invalid: expected a finite number > 0")
        if not 0.0 <= gamma <= 1.0 or ent_coef < 0:
            raise ValueError(f"agent.gamma={gamma} / agent.ent_coef={ent_coef} invalid: expected gamma in [0, 1], ent_coef >= 0")
        if not min_pixel_log_std <= init_pixel_log_std <= 0.0:
            raise ValueError(f"agent.init_pixel_log_std={init_pixel_log_std} invalid: expected "
                             f"min_pixel_log_std ({min_pixel_log_std}) <= it <= 0")
        self.hparams = dict(code_dim=code_dim, action_bound=action_bound, code_scale=code_scale,
                            init_autoencoder=init_autoencoder, width=width, hidden=hidden,
                            init_log_std=init_log_std, init_pixel_log_std=init_pixel_log_std,
                            min_pixel_log_std=min_pixel_log_std, lr_policy=lr_policy, lr_transformer=lr_transformer,
                            lr_value=lr_value, gamma=gamma, ent_coef=ent_coef, max_grad_norm=max_grad_norm,
                            normalize_advantages=normalize_advantages)
        self.policy = PolicyNet(code_dim, hidden, action_bound, code_scale, init_log_std)
        self.transformer = TransformNet(code_dim, code_scale, init_pixel_log_std)
        self.value = ValueNet(width, hidden)

    def act(self, obs_NO: torch.Tensor, deterministic: bool = False) -> Dict[str, torch.Tensor]:
        """Next images N×784 (sampled, or T's mean of π's mean) with the joint log-prob N and π's entropy N."""
        x, goal, t_frac = split_obs(obs_NO)
        pi = Independent(Normal(self.policy(x, goal, t_frac), self.policy.log_std.exp()), 1)
        action = pi.mean if deterministic else pi.sample()
        pixel_std = self.transformer.log_std.clamp(min=self.hparams["min_pixel_log_std"], max=0.0).exp()
        tr = Independent(Normal(self.transformer(x, action), pixel_std), 3)
        image = tr.mean if deterministic else tr.sample()
        return {"image": image.flatten(1), "log_prob": pi.log_prob(action) + tr.log_prob(image),
                "entropy": pi.entropy(), "value": self.value(x, goal, t_frac)}

    @torch.no_grad()
    def generate(self, source_N1HW: torch.Tensor, goal_N1HW: torch.Tensor, steps: int) -> torch.Tensor:
        """Deterministic trajectories T×N×1×28×28 (means of π and T) for evaluation."""
        return unroll(self.policy, self.transformer, source_N1HW, goal_N1HW, steps).clamp(0.0, 1.0)

    def optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam([{"params": self.policy.parameters(), "lr": hp["lr_policy"]},
                                 {"params": self.transformer.parameters(), "lr": hp["lr_transformer"]},
                                 {"params": self.value.parameters(), "lr": hp["lr_value"]}])


Agent = TransformAgents  # rl.train validates the ``agent`` section against this signature


def rollout(core, agents: TransformAgents, deterministic: bool = False) -> Dict[str, torch.Tensor]:
    """One episode in every row of ``core`` (reset first). Returns T×N ``reward``, ``alive``,
    ``log_prob``, ``entropy``, ``value`` and N ``final_distance``, ``realism`` (mean p(real))."""
    obs = core.reset(None)
    n, steps = core.num_envs, core.steps
    alive = torch.ones(n, dtype=torch.bool, device=obs.device)
    zeros = torch.zeros(steps, n, device=obs.device)
    out = {k: zeros.clone() for k in ("reward", "alive", "log_prob", "entropy", "value", "realism")}
    out = {k: list(v) for k, v in out.items()}
    final_distance = torch.zeros(n, device=obs.device)
    for t in range(steps):
        ids = alive.nonzero()[:, 0]
        if len(ids) == 0:
            break
        step = agents.act(obs[ids], deterministic)
        next_obs, reward, done, _, info = core.step(step["image"], ids)
        for key, value in (("reward", reward), ("log_prob", step["log_prob"]), ("entropy", step["entropy"]),
                           ("value", step["value"]), ("realism", info["realism"])):
            out[key][t] = out[key][t].index_put((ids,), value)
        out["alive"][t] = alive.float()
        final_distance[ids] = info["distance"]
        obs = obs.index_put((ids,), next_obs)
        alive = alive.index_put((ids,), ~done)
    batch = {k: torch.stack(v) for k, v in out.items()}
    batch["realism"] = (batch["realism"] * batch["alive"]).sum(0) / batch["alive"].sum(0)
    batch["final_distance"] = final_distance
    return batch


def reinforce_loss(agents: TransformAgents, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Policy-gradient loss of π and T plus V's regression loss (scalars) from a :func:`rollout`."""
    hp, alive = agents.hparams, batch["alive"]
    returns = torch.zeros_like(batch["reward"])
    future = torch.zeros_like(batch["reward"][0])
    for t in reversed(range(len(returns))):
        future = batch["reward"][t] + hp["gamma"] * future
        returns[t] = future
    count = alive.sum().clamp_min(1.0)
    adv = (returns - batch["value"]).detach()
    if hp["normalize_advantages"]:
        mean = (adv * alive).sum() / count
        std = (((adv - mean) ** 2 * alive).sum() / count).sqrt()
        adv = (adv - mean) / (std + 1e-8)
    pg = -(adv * batch["log_prob"] * alive).sum() / count
    value = (((batch["value"] - returns) ** 2) * alive).sum() / count
    entropy = (batch["entropy"] * alive).sum() / count
    return {"loss": pg + 0.5 * value - hp["ent_coef"] * entropy, "pg": pg, "value": value, "entropy": entropy}


def evaluate(core, agents: TransformAgents, episodes: int) -> Dict[str, float]:
    """Mean deterministic return, final distance and realism over ``episodes`` episodes (core reseeded
    with the same seeds each call, so tests compare agents, not luck)."""
    core.reseed(list(range(10_000_019, 10_000_019 + core.num_envs)))
    totals: Dict[str, List[torch.Tensor]] = {"return": [], "final_distance": [], "realism": []}
    with torch.no_grad():
        for _ in range(math.ceil(episodes / core.num_envs)):
            batch = rollout(core, agents, deterministic=True)
            for key, value in (("return", batch["reward"].sum(0)), ("final_distance", batch["final_distance"]),
                               ("realism", batch["realism"])):
                totals[key].append(value)
    return {k: float(torch.cat(v)[:episodes].mean()) for k, v in totals.items()}


def save_agents(agents: TransformAgents, path: Path) -> Path:
    """Atomically write the agents' hyper-parameters and weights."""
    atomic_torch_save({"format": _FORMAT, "hparams": dict(agents.hparams),
                       "state_dict": {k: v.detach().cpu() for k, v in agents.state_dict().items()}}, Path(path))
    return Path(path)


def load_agents(path: str, map_location: str = "cpu") -> TransformAgents:
    """Agents from a ``policy.pt`` or a run folder holding one, in eval mode."""
    path = Path(path)
    path = path / POLICY_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no agents file at {path}: expected a {POLICY_FILE} or a transform_pg run folder")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a transform_pg agents file (format {_FORMAT})")
    agents = TransformAgents(**payload["hparams"])
    agents.load_state_dict(payload["state_dict"])
    return agents.eval()


def _update(agents: TransformAgents, optimizer: torch.optim.Optimizer, core) -> Dict[str, float]:
    batch = rollout(core, agents)
    losses = reinforce_loss(agents, batch)
    optimizer.zero_grad()
    losses["loss"].backward()
    for net in (agents.policy, agents.transformer, agents.value):
        nn.utils.clip_grad_norm_(net.parameters(), agents.hparams["max_grad_norm"])
    optimizer.step()
    return {"train_return": float(batch["reward"].sum(0).mean()), "train_final_distance": float(batch["final_distance"].mean()),
            "train_realism": float(batch["realism"].mean()), **{f"loss_{k}": float(v.detach()) for k, v in losses.items()},
            "pixel_std": float(agents.transformer.log_std.exp()), "action_std": float(agents.policy.log_std.exp().mean())}


def train_agents(agents: TransformAgents, train_core, test_core, run_dir: Path, total_steps: int, epochs: int,
                 test_episodes: int) -> Dict[str, Any]:
    """REINFORCE updates (one per batched rollout of ``train_core.num_envs`` episodes) until
    ``total_steps`` env steps; a deterministic test after each of ``epochs`` equal parts keeps the
    best agents in ``run_dir/policy.pt``. Returns the summary (best test return, steps, ...)."""
    per_update = train_core.num_envs * train_core.steps
    updates = math.ceil(total_steps / per_update)
    if updates < epochs or epochs < 1:
        raise ValueError(f"train.total_steps={total_steps} gives {updates} updates of {per_update} steps: "
                         f"expected at least train.epochs={epochs} (>= 1)")
    test_at = {math.ceil(updates * (e + 1) / epochs) for e in range(epochs)}
    optimizer, writer = agents.optimizer(), SummaryWriter(log_dir=str(run_dir))
    curve: List[Dict[str, float]] = []
    best: Dict[str, Any] = {"test_return": -math.inf}
    start = time.time()
    try:
        for i in range(1, updates + 1):
            row = {"update": i, "episodes": i * train_core.num_envs, "env_steps": i * per_update, **_update(agents, optimizer, train_core)}
            if i in test_at:
                row.update({f"test_{k}": v for k, v in evaluate(test_core, agents, test_episodes).items()})
                if row["test_return"] > best["test_return"]:
                    best = {"update": i, **{k: v for k, v in row.items() if k.startswith("test_")}}
                    save_agents(agents, run_dir / POLICY_FILE)
                log.info("update %d/%d: train return %.3f, test return %.3f (best %.3f)", i, updates,
                         row["train_return"], row["test_return"], best["test_return"])
            row["wall_s"] = round(time.time() - start, 2)
            curve.append(row)
            for key, value in row.items():
                writer.add_scalar(f"train/{key}", value, row["env_steps"])
            if i in test_at:
                atomic_write_text(run_dir / "curve.json", json.dumps(curve))
    finally:
        writer.close()
    return {"best_reward": best["test_return"], "best": best, "env_steps": updates * per_update, "updates": updates,
            "episodes": updates * train_core.num_envs, "test_episodes": test_episodes}


def train_run(cfg: Dict[str, Any]) -> Path:
    """``python -m rl.train`` for ``agent.name=transform_pg``: build the env, train, write the run folder.

    Uses ``train.total_steps``, ``epochs``, ``num_envs`` (episodes per update), ``test_envs`` and
    ``test_episodes`` (default 4 × test_envs); the Tianshou-only loop settings (batch_size,
    buffer_size, warmup_steps, collect_steps, update_per_step, repeat) do not apply.
    """
    loop = cfg["train"]
    if loop["vector"] != "batched" or cfg.get("resume"):
        raise ValueError(f"transform_pg supports train.vector='batched' only and no resume= "
                         f"(got vector={loop['vector']!r}, resume={cfg.get('resume')!r})")
    torch.set_num_threads(cfg["num_threads"])
    seed_everything(cfg["seed"])  # the nets' initial weights depend on the seed alone
    agents = TransformAgents(**{k: v for k, v in cfg["agent"].items() if k != "name"})  # bad values fail first
    make_core = get_env_builder(cfg["env"]["name"])(**{k: v for k, v in cfg["env"].items() if k != "name"})
    train_core, test_core = make_core(loop["num_envs"], cfg["seed"]), make_core(loop["test_envs"], 0)
    if agents.hparams["init_autoencoder"]:
        init_from_autoencoder(agents.policy, agents.transformer, load_module(agents.hparams["init_autoencoder"], "autoencoder"))
    run_dir = new_run_dir(cfg["out_dir"], cfg["name"])
    save_run_config(cfg, run_dir)
    log.info("run folder: %s", run_dir)
    start = time.time()
    try:
        summary = train_agents(agents, train_core, test_core, run_dir, loop["total_steps"], loop["epochs"],
                               loop["test_episodes"] or 4 * loop["test_envs"])
    except BaseException:
        if not (run_dir / POLICY_FILE).is_file():
            shutil.rmtree(run_dir, ignore_errors=True)  # no test passed: nothing worth keeping
        raise
    summary["wall_s"] = round(time.time() - start, 1)
    atomic_write_text(run_dir / "train_summary.json", json.dumps(summary, indent=2))
    return run_dir
