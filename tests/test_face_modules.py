"""Face attribute systems: nets, smoke runs, checkpoint round-trips, a tiny learning check."""
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from datamodules.faces import UTKFaceDataModule
from lightning_modules.face_attributes import AgeRegressorModule, GenderClassifierModule
from lightning_modules.nets.faces import FaceNet, FaceNetEnsemble, build_face_net
from tests.conftest import write_utkface_folder


@pytest.fixture
def utk_dir(tmp_path):
    """16 UTKFace-named random faces (ages 5..80, alternating gender)."""
    rng = np.random.default_rng(0)
    return write_utkface_folder(tmp_path / "utk", [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(16)])


def tiny_trainer(tmp_path, **kwargs) -> pl.Trainer:
    warnings.filterwarnings("ignore", message=".*(does not have many workers|log_every_n_steps).*")
    defaults = dict(default_root_dir=str(tmp_path), accelerator="cpu", logger=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


def datamodule(folder, **kwargs) -> UTKFaceDataModule:
    return UTKFaceDataModule(root=str(folder), batch_size=4, resolution=32, val_fraction=0.25,
                             test_fraction=0.25, **kwargs)


@pytest.mark.parametrize("backbone, channels", [("small", 128), ("resnet18", 256)])
def test_facenet_shapes_and_resize(backbone, channels):
    torch.manual_seed(0)
    net = FaceNet(backbone, out_dim=2, input_size=32).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert net(x).shape == (3, 2)
    feats = net.features(x)
    assert feats.shape == (3, channels * 16) and net.feature_shape == (channels, 4, 4)
    # other sizes are resized (antialiased bilinear) to input_size before the backbone;
    # train-mode BN keeps an untrained net's outputs O(1) so that differences show
    net.train()
    big = torch.rand(3, 3, 80, 80) * 2 - 1
    small = torch.nn.functional.interpolate(big, size=(32, 32), mode="bilinear", antialias=True)
    with torch.no_grad():
        assert torch.allclose(net(big), net(small), atol=1e-5)
        assert not torch.allclose(net(big), net(big[:, :, :32, :32]), atol=1e-2)
    with pytest.raises(ValueError, match=r"expected shape \(N, 3, H, W\), got \(3, 1, 32, 32\)"):
        net(x[:, :1])


def test_facenet_errors_and_pretrained_path(tmp_path):
    import torchvision

    with pytest.raises(ValueError, match="unknown backbone 'vgg'.*resnet50"):
        FaceNet("vgg")
    with pytest.raises(ValueError, match="ResNet backbones only"):
        FaceNet("small", pretrained_path="x.pth")
    with pytest.raises(FileNotFoundError, match="'missing.pth' does not exist"):
        FaceNet("resnet18", pretrained_path="missing.pth")
    torch.manual_seed(5)
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = FaceNet("resnet18", pretrained_path=str(tmp_path / "r18.pth"))
    assert torch.equal(net.mid[0].weight, ref.conv1.weight)
    assert torch.equal(net.top[1].conv2.weight, ref.layer4[1].conv2.weight)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ValueError, match="does not fit torchvision resnet18"):
        FaceNet("resnet18", pretrained_path=str(tmp_path / "r50.pth"))


def test_ensemble_is_the_members_mean_and_concatenation():
    torch.manual_seed(0)
    net = build_face_net(3, backbone="small", out_dim=1, input_size=32).train()  # train-mode BN: outputs O(1)
    assert isinstance(net, FaceNetEnsemble) and isinstance(build_face_net(1, backbone="small"), FaceNet)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        outs = [m(x) for m in net.members]
        assert not torch.allclose(outs[0], outs[1])  # members are initialised independently
        assert torch.allclose(net(x), torch.stack(outs).mean(0))
        assert torch.equal(net.member_outputs(x), torch.stack(outs))
        feats = net.features(x)
        assert feats.shape == (4, 3 * 128 * 16) and net.feature_shape == (3 * 128, 4, 4)
        assert torch.equal(feats[:, :2048], net.members[0].features(x))
        both = net.forward_and_features(x)
        assert torch.allclose(both[0], net(x)) and torch.equal(both[1], feats)
        assert torch.equal(net.forward_and_features(x, "embed")[1], net.embed(x))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"members={bad!r} invalid: expected an int >= 1"):
            build_face_net(bad)


def _fit_and_reload(module, utk_dir, tmp_path):
    """Two training steps, a checkpoint, and the module loaded back from it: it must give the same outputs."""
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=1)
    trainer.fit(module, datamodule=datamodule(utk_dir))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = type(module).load_from_checkpoint(path).eval()
    module.eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), module(x))
    return loaded, x


def test_ensemble_members_train_on_their_own_losses(utk_dir, tmp_path):
    """Each member's gradient is its own error's, not the mean prediction's (a deep ensemble)."""
    pl.seed_everything(0)
    module = AgeRegressorModule(backbone="small", input_size=32, members=2)
    batch = next(iter(torch.utils.data.DataLoader(
        [{"image": torch.rand(3, 32, 32) * 2 - 1, "age": torch.tensor(20.0 + 10 * i)} for i in range(4)],
        batch_size=4)))
    module.log = lambda *a, **k: None
    module._shared_step(batch, "train").backward()
    grads = [m.head.bias.grad.clone() for m in module.net.members]
    for m in module.net.members:
        m.zero_grad()
    with torch.no_grad():  # train-mode BN, same batch: the members' ages as the step saw them
        ages = 30.0 + 20.0 * module.net.member_outputs(batch["image"]).squeeze(2)
    for k, member_ages in enumerate(ages):  # d smooth_l1 / d age = clamp(error, -1, 1); the loss averages K·N terms
        expected = 20.0 * (member_ages - batch["age"]).clamp(-1, 1).mean() / 2
        assert torch.allclose(grads[k], expected.reshape(1), rtol=1e-4, atol=1e-6), k
    assert not torch.allclose(grads[0], grads[1])  # a loss on the mean prediction would give both the same
    loaded, x = _fit_and_reload(module, utk_dir, tmp_path)
    with torch.no_grad():
        assert loaded.hparams.members == 2
        age, feats = loaded.age_and_features(x)
        assert torch.allclose(age, loaded(x)) and feats.shape == (2, 2 * 2048)


def test_monitor_attributes():
    assert AgeRegressorModule.monitor == ("val/mae", "min")
    assert GenderClassifierModule.monitor == ("val/acc", "max")


@pytest.mark.parametrize("cls, metric", [(AgeRegressorModule, "mae"), (GenderClassifierModule, "acc")])
def test_fast_dev_run_smoke(cls, metric, utk_dir, tmp_path):
    pl.seed_everything(0)
    module = cls(backbone="small", input_size=32)
    trainer = tiny_trainer(tmp_path, fast_dev_run=True)
    dm = datamodule(utk_dir)
    trainer.fit(module, datamodule=dm)
    assert trainer.state.finished
    for key in (f"train/{metric}", f"val/{metric}", "train/loss", "val/loss"):
        assert torch.isfinite(trainer.callback_metrics[key]), key
    results = trainer.test(module, datamodule=dm, verbose=False)
    assert f"test/{metric}" in results[0]
    preds = torch.cat(trainer.predict(module, datamodule=dm))
    assert preds.shape == (4,)
    if cls is GenderClassifierModule:
        assert ((preds >= 0) & (preds <= 1)).all()


@pytest.mark.parametrize("cls", [AgeRegressorModule, GenderClassifierModule])
def test_checkpoint_round_trip(cls, utk_dir, tmp_path):
    pl.seed_everything(0)
    module = cls(backbone="small", input_size=32, lr=0.01)
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=1)
    trainer.fit(module, datamodule=datamodule(utk_dir))
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = cls.load_from_checkpoint(path).eval()
    module.eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), module(x))
        if cls is AgeRegressorModule:
            assert torch.equal(loaded.features(x), module.features(x))
    assert loaded.hparams.lr == 0.01 and loaded.hparams.input_size == 32


def test_checkpoint_forgets_pretrained_path(utk_dir, tmp_path):
    import torchvision

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    module = AgeRegressorModule(backbone="resnet18", input_size=32, pretrained_path=str(weights))
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=datamodule(utk_dir))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    weights.unlink()  # the weights live in the checkpoint: the file is no longer needed
    loaded = AgeRegressorModule.load_from_checkpoint(tmp_path / "m.ckpt").eval()
    assert loaded.hparams.pretrained_path is None
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), module.eval()(x))


def test_gender_ignores_unknown_targets():
    torch.manual_seed(0)
    module = GenderClassifierModule(backbone="small", input_size=16)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer warns
        unknown = module._shared_step({"image": images, "gender": torch.full((4,), -1)}, "val")
        mixed = module._shared_step({"image": images, "gender": torch.tensor([0, -1, 1, -1])}, "val")
    assert unknown.item() == 0.0
    logits = module(images)
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([0, 1]))
    assert torch.allclose(mixed, expected, atol=1e-6)


def test_gender_ensemble_members_each_pay_their_own_cross_entropy():
    torch.manual_seed(0)
    module = GenderClassifierModule(backbone="small", input_size=16, members=2).eval()
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    target = torch.tensor([0, -1, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer warns
        loss = module._shared_step({"image": images, "gender": target}, "val")
    with torch.no_grad():
        outs = module.net.member_outputs(images)
    known = target >= 0
    expected = torch.stack([torch.nn.functional.cross_entropy(o[known], target[known]) for o in outs]).mean()
    mean_logits_loss = torch.nn.functional.cross_entropy(outs.mean(0)[known], target[known])
    assert torch.allclose(loss, expected, atol=1e-6) and not torch.allclose(loss, mean_logits_loss, atol=1e-4)
    assert torch.allclose(module(images), outs.mean(0), atol=1e-6)


def brightness_batch(n: int = 32, seed: int = 0):
    """Images whose brightness encodes the age (and whose red/blue tint encodes the gender)."""
    g = torch.Generator().manual_seed(seed)
    age = torch.randint(5, 80, (n,), generator=g).float()
    gender = torch.randint(0, 2, (n,), generator=g)
    level = (age / 80 * 1.6 - 0.8).view(n, 1, 1, 1)
    tint = torch.stack([gender * 0.2, torch.zeros(n), -gender * 0.2], 1).view(n, 3, 1, 1)
    image = (level + tint + 0.05 * torch.randn(n, 3, 16, 16, generator=g)).clamp(-1, 1)
    return {"image": image, "age": age, "gender": gender}


@pytest.mark.parametrize("cls", [AgeRegressorModule, GenderClassifierModule])
def test_training_step_learns(cls):
    """40 optimiser steps on one batch through training_step cut the loss by far (gradient path works)."""
    torch.manual_seed(0)
    module = cls(backbone="small", input_size=16, lr=3e-3)
    opt = module.configure_optimizers()
    batch = brightness_batch()
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer warns
        for _ in range(40):
            loss = module.training_step(batch, 0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::8]


@pytest.mark.parametrize("kind, separate", [("mid", "features"), ("embed", "embed")])
def test_age_and_features_in_one_trunk_pass_equal_the_separate_calls(kind, separate):
    from rl.builders.face_age_models import AgeAndFeatures

    torch.manual_seed(0)
    model = AgeRegressorModule(backbone="small", input_size=32).eval()
    x = torch.rand(4, 3, 64, 64) * 2 - 1  # resized inside, as the env's 64×64 faces for a 32-pixel net
    with torch.no_grad():
        ages, feats = AgeAndFeatures(model, kind)(x)
        want = model.features(x) if separate == "features" else model.net.embed(x)
        assert torch.equal(ages, model(x)) and torch.equal(feats, want)
        calls = []
        model.net.mid.register_forward_hook(lambda *_: calls.append(1))
        model.age_and_features(x, kind)
    assert len(calls) == 1  # one pass of the trunk for both


def _domain_module(cls=AgeRegressorModule, **kwargs):
    """A domain-adversarial system whose 'generated' pool is 8 fixed faces (no generator needed)."""
    pl.seed_everything(0)
    module = cls(backbone="small", input_size=32, domain_weight=1.0, **kwargs)
    module._domain_faces = (torch.rand(8, 3, 32, 32) * 2 - 1).half()
    module.log = lambda *a, **k: None
    return module


def test_domain_loss_reverses_the_trunk_gradient_and_skips_photos_outside_the_age_range():
    """The domain classifier learns to tell photos from generated faces; the trunks learn not to be told apart."""
    module = _domain_module(members=2, domain_min_age=18.0, domain_max_age=70.0)
    assert len(module.domain_heads) == 2
    photos = torch.rand(6, 3, 32, 32) * 2 - 1
    ages = torch.tensor([5.0, 10.0, 20.0, 30.0, 40.0, 90.0])  # 3 of them in the domain loss
    module.train()
    outputs, loss = module._adversarial_pass(photos, ages)
    assert outputs.shape == (2, 6, 1) and torch.isfinite(loss)
    seen = []
    hook = module.domain_heads[0][0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    torch.manual_seed(1)
    module._adversarial_pass(photos, ages)
    hook.remove()
    assert seen == [3 + 6]  # the in-range photos and as many generated faces as photos

    def domain_loss_after(params, lr=1e-3):
        torch.manual_seed(1)
        _, before = module._adversarial_pass(photos, ages)
        module.zero_grad()
        before.backward()
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        torch.manual_seed(1)
        _, after = module._adversarial_pass(photos, ages)
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        return before.item(), after.item()

    heads = list(module.domain_heads.parameters())
    trunk = [p for m in module.net.members for p in m.mid.parameters()]
    before, after = domain_loss_after(heads)
    assert after < before  # a step of the domain heads along their gradient separates the domains better
    before, after = domain_loss_after(trunk)
    assert after > before  # a step of the trunks along the reversed gradient confuses them


@pytest.mark.parametrize("cls", [AgeRegressorModule, GenderClassifierModule])
def test_domain_adversarial_systems_train_and_reload(cls, utk_dir, tmp_path):
    module = _domain_module(cls)
    del module.log  # the Trainer's own logging
    loaded, _ = _fit_and_reload(module, utk_dir, tmp_path)
    assert loaded.hparams.domain_weight == 1.0
    assert torch.equal(loaded.domain_heads[0][0].weight, module.domain_heads[0][0].weight)
    assert loaded._domain_faces is None  # the generated pool is no part of the checkpoint


@pytest.mark.parametrize("cls", [AgeRegressorModule, GenderClassifierModule])
@pytest.mark.parametrize("kwargs, match", [
    (dict(domain_weight=-1.0), r"domain_weight=-1.0 invalid"),
    (dict(domain_weight=float("nan")), r"domain_weight=nan invalid"),
    (dict(domain_weight=1.0, domain_min_age=70.0, domain_max_age=18.0), r"domain_max_age > domain_min_age"),
])
def test_domain_settings_are_checked(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(backbone="small", input_size=32, **kwargs)
