"""Plain nn.Modules of experiment C (learned transformations, docs/experiment-c.md).

- :class:`PolicyNet` π(x_t, x_g, t/T) -> mean of a Gaussian action a ∈ [-b, b]^d (d = the AE's code size);
- :class:`TransformNet` T(x_t, a) -> mean of the next image x_{t+1} ∈ (0, 1)^{28×28};
- :class:`ValueNet` V(x_t, x_g, t/T): the learned REINFORCE baseline;
- :class:`RealismNet`: the discriminator's CNN (one logit per image, > 0 = looks like an MNIST digit).

The RL agents and the BPTT baseline use the *same* π and T classes: one transition is
``x_{t+1} = T(x_t, π(x_t, x_g, t/T))`` (:func:`unroll`), so the comparison isolates the training
signal (policy gradients vs backpropagation through time), not the architecture.

π and T are built from the experiment-B autoencoder's encoder/decoder shapes and start from its
weights (``init_autoencoder``): from scratch, neither training signal got a conditional generator
below the "average digit" (final L2 ≈ 9 of 10) in the few CPU minutes the benchmark allows, even
on the distance alone; from the AE, a = (code(x_g) − code(x_t)) / (steps left) already reaches the
goal, and what is learned is the path and the look of the images.
"""
from typing import Tuple

import torch
from torch import nn

from lightning_modules.nets.mnist import ConvDecoder, ConvEncoder
from utils.errors import UserError

PIXELS = 28 * 28


def conv_trunk(in_channels: int, width: int, activation: type = nn.ReLU) -> nn.Sequential:
    """N×C×28×28 -> N×(2·width·7·7) features (two stride-2 convs)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 4, stride=2, padding=1), activation(),       # 14×14
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), activation(),         # 7×7
        nn.Flatten(),
    )


def split_obs(obs_NO: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Experiment C observation ``[x_t (784), x_g (784), t/T (1)]`` -> (x_t N×1×28×28, x_g, t_frac N×1)."""
    if obs_NO.dim() != 2 or obs_NO.shape[1] != 2 * PIXELS + 1:
        raise UserError(f"observations must be N×{2 * PIXELS + 1} ([x_t, x_g, t/T]), got {tuple(obs_NO.shape)}")
    n = len(obs_NO)
    return (obs_NO[:, :PIXELS].reshape(n, 1, 28, 28), obs_NO[:, PIXELS:2 * PIXELS].reshape(n, 1, 28, 28),
            obs_NO[:, -1:])


class PolicyNet(nn.Module):
    """π: (x_t, x_g, t/T) -> action mean N×code_dim in [-bound, bound] (tanh): a step in AE-code space
    (in units of ``code_scale``). Both images go through one AE-shaped encoder; ``log_std`` is π's own."""

    def __init__(self, code_dim: int = 32, hidden: int = 128, action_bound: float = 2.0, code_scale: float = 10.0,
                 init_log_std: float = -0.5):
        super().__init__()
        self.action_bound, self.code_scale = float(action_bound), float(code_scale)
        self.encoder = ConvEncoder(code_dim)
        self.head = nn.Sequential(nn.Linear(2 * code_dim + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, code_dim))
        self.log_std = nn.Parameter(torch.full((code_dim,), float(init_log_std)))

    def forward(self, x_N1HW: torch.Tensor, goal_N1HW: torch.Tensor, t_frac_N1: torch.Tensor) -> torch.Tensor:
        codes = self.encoder(torch.cat([x_N1HW, goal_N1HW])) / self.code_scale
        feats = torch.cat([*codes.chunk(2), t_frac_N1], dim=1)
        return self.action_bound * torch.tanh(self.head(feats))


class TransformNet(nn.Module):
    """T: (x_t, a) -> mean image ``sigmoid(dec(enc(x_t) + code_scale·a))`` N×1×28×28 in (0, 1).

    Encoder and decoder have the AE's shapes (:func:`init_from_autoencoder` copies its weights, so
    T starts as "move the code of x_t by a and decode"); ``log_std`` is its pixel noise as an agent.
    """

    def __init__(self, code_dim: int = 32, code_scale: float = 10.0, init_log_std: float = -3.0):
        super().__init__()
        self.code_scale = float(code_scale)
        self.encoder, self.decoder = ConvEncoder(code_dim), ConvDecoder(code_dim)
        self.log_std = nn.Parameter(torch.tensor(float(init_log_std)))

    def forward(self, x_N1HW: torch.Tensor, action_NA: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x_N1HW) + self.code_scale * action_NA))


def init_from_autoencoder(policy: PolicyNet, transformer: TransformNet, autoencoder: nn.Module) -> None:
    """Copy a trained :class:`lightning_modules.autoencoder.AutoencoderModule`'s encoder into π and T
    and its decoder into T (shapes must match: ``code_dim`` = the AE's)."""
    try:
        for net in (policy.encoder, transformer.encoder):
            net.load_state_dict(autoencoder.encoder.state_dict())
        transformer.decoder.load_state_dict(autoencoder.decoder.state_dict())
    except RuntimeError as err:
        raise UserError(f"the autoencoder does not fit π/T (code_dim?): {str(err).splitlines()[0]}") from None


class ValueNet(nn.Module):
    """V: (x_t, x_g, t/T) -> expected return N (the REINFORCE baseline)."""

    def __init__(self, width: int = 16, hidden: int = 128):
        super().__init__()
        self.trunk = conv_trunk(2, width)
        self.head = nn.Sequential(nn.Linear(2 * width * 49 + 1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x_N1HW: torch.Tensor, goal_N1HW: torch.Tensor, t_frac_N1: torch.Tensor) -> torch.Tensor:
        feats = self.trunk(torch.cat([x_N1HW, goal_N1HW], dim=1))
        return self.head(torch.cat([feats, t_frac_N1], dim=1)).squeeze(-1)


class RealismNet(nn.Module):
    """Discriminator CNN: image N×1×28×28 in [0, 1] -> realism logit N (> 0: looks like a real digit)."""

    def __init__(self, width: int = 16, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            *conv_trunk(1, width, activation=lambda: nn.LeakyReLU(0.2)), nn.Dropout(dropout),
            nn.Linear(2 * width * 49, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1),
        )

    def forward(self, image_N1HW: torch.Tensor) -> torch.Tensor:
        return self.net(image_N1HW).squeeze(-1)


def unroll(policy: PolicyNet, transformer: TransformNet, source_N1HW: torch.Tensor, goal_N1HW: torch.Tensor,
           steps: int) -> torch.Tensor:
    """Deterministic trajectory (action and image means): T×N×1×28×28 images x_1 .. x_T.

    Differentiable end to end: the BPTT baseline trains through it; the RL agents call it only
    for evaluation (under ``no_grad``), their training rollouts sample and detach every step.
    """
    x, images = source_N1HW, []
    for t in range(steps):
        t_frac = torch.full((len(x), 1), t / steps, device=x.device, dtype=x.dtype)
        x = transformer(x, policy(x, goal_N1HW, t_frac))
        images.append(x)
    return torch.stack(images)
