"""Experiment B's reward: ``alpha * q(target | image) - beta * relu(1 - D(G(z)))``, for one target or for all ten.

Both the environment (:class:`rl.envs.mnist_task.MnistTaskCore`) and the evaluation call these functions.
"""
import torch

from utils.errors import UserError


def target_probability(logits_NC: torch.Tensor, targets_N: torch.Tensor) -> torch.Tensor:
    """Softmax probability of each row's target class: N×C logits, N int targets -> N float."""
    return torch.softmax(logits_NC.float(), dim=1).gather(1, targets_N.long()[:, None])[:, 0]


REWARD_SHAPES = ("prob", "log_prob")
LOG_FLOOR = 10.0  # log_prob shape: log p below -10 (p < 4.5e-5) all score 0


def task_reward(
    logits_NC: torch.Tensor,
    targets_N: torch.Tensor,
    d_score_N: torch.Tensor,
    alpha: float = 30.0,
    beta: float = 3.0,
    shape: str = "prob",
) -> torch.Tensor:
    """Reward ``alpha * q(target | image) - beta * relu(1 - D(G(z)))`` (hinge realism).

    Args:
        logits_NC: reward-classifier logits of the generated images.
        targets_N: int target digits.
        d_score_N: latent-discriminator scores of ``G(z)`` (N or N×1).
        alpha, beta: weights (reference 30 and 3).
        shape: ``"prob"``: q = p_cls(target) (the reference); ``"log_prob"`` (not from the
            paper): q = 1 + max(log p_cls(target), -10) / 10, also in [0, 1] and 1 at p = 1, but
            it still rises where p is tiny, so the critic sees a slope far from the target's
            region of z (with ``prob`` most of z space is a flat 0).
    Returns:
        N float32 rewards. Evaluation calls this same function.
    """
    hinge = torch.relu(1.0 - d_score_N.float().reshape(-1))
    if shape == "prob":
        quality = target_probability(logits_NC, targets_N)
    elif shape == "log_prob":
        log_p = torch.log_softmax(logits_NC.float(), dim=1).gather(1, targets_N.long()[:, None])[:, 0]
        quality = 1.0 + log_p.clamp_min(-LOG_FLOOR) / LOG_FLOOR
    else:
        raise UserError(f"reward shape {shape!r} invalid: expected one of {list(REWARD_SHAPES)}")
    return alpha * quality - beta * hinge


def task_rewards_all(logits_NC: torch.Tensor, d_score_N: torch.Tensor, alpha: float = 30.0, beta: float = 3.0,
                     shape: str = "prob") -> torch.Tensor:
    """N×C: the :func:`task_reward` of each image for every target class (not from the paper: one
    reward-classifier pass scores a transition for every task of the set)."""
    n, c = logits_NC.shape
    targets = torch.arange(c, device=logits_NC.device).repeat(n)
    return task_reward(logits_NC.repeat_interleave(c, 0), targets, d_score_N.reshape(-1).repeat_interleave(c),
                       alpha, beta, shape).reshape(n, c)


def z_prior_penalty(z_NK: torch.Tensor, weight: float, radius: float) -> torch.Tensor:
    """``weight * relu(|z| - radius)^2`` per row (not from the paper): keeps actions where the l-GAN was
    trained (|z| of N(0, I_5) is below 3.9 in 99 % of draws)."""
    if weight == 0:
        return torch.zeros(len(z_NK), device=z_NK.device)
    return weight * torch.relu(z_NK.float().norm(dim=1) - radius).pow(2)
