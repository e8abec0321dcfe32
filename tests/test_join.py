"""lightning_modules.join: separately trained face models stacked into one ensemble checkpoint."""
import pytest
import pytorch_lightning as pl
import torch

from lightning_modules.checkpoints import CHECKPOINT_TAG, load_module
from lightning_modules.face_attributes import AgeRegressorModule, GenderClassifierModule
from lightning_modules.join import main, write_joined


def _saved(module, path, kind="age_regressor"):
    """``module`` with batch-norm statistics of its own (one train-mode pass), saved as a suite checkpoint."""
    module.train()
    with torch.no_grad():
        module(torch.rand(8, 3, 32, 32) * 2 - 1)
    module.eval()
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": pl.__version__, CHECKPOINT_TAG: {"module": kind, "config": {}}}, path)
    return module


@pytest.fixture
def sources(tmp_path):
    pl.seed_everything(0)
    return [(_saved(AgeRegressorModule(backbone="small", input_size=32), tmp_path / "plain.ckpt"), "plain.ckpt"),
            (_saved(AgeRegressorModule(backbone="small", input_size=32, domain_weight=3.0), tmp_path / "dann.ckpt"),
             "dann.ckpt"),
            (_saved(AgeRegressorModule(backbone="small", input_size=32, members=2), tmp_path / "pair.ckpt"),
             "pair.ckpt")]


def test_joined_checkpoint_is_the_mean_and_concatenation_of_every_member(sources, tmp_path):
    out = write_joined("age_regressor", tmp_path / "joined.ckpt", [str(tmp_path / name) for _, name in sources])
    joined = load_module(str(out), "age_regressor")  # the ordinary loader, as env.age_checkpoint uses it
    assert joined.hparams.members == 4 and joined.hparams.domain_weight == 0.0
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        member_ages = torch.cat([module.net.member_outputs(x) if module.hparams.members > 1 else module.net(x)[None]
                                 for module, _ in sources])  # 4×N×1, raw head outputs of every member
        expected = 30.0 + 20.0 * member_ages.mean(0).squeeze(1)  # the mean over members, not over sources
        ages, feats = joined.age_and_features(x, "mid")
        assert torch.allclose(joined(x), expected, atol=1e-5) and torch.allclose(ages, expected, atol=1e-5)
        expected_feats = torch.cat([module.features(x) for module, _ in sources], 1)
        assert torch.allclose(feats, expected_feats, atol=1e-6)
    record = torch.load(out, weights_only=True)[CHECKPOINT_TAG]["config"]
    assert record["joined_from"] == [str(tmp_path / name) for _, name in sources]


def test_bad_sources_fail_with_one_line_and_write_nothing(sources, tmp_path, capsys):
    out = tmp_path / "joined.ckpt"
    other_shape = _saved(AgeRegressorModule(backbone="small", input_size=48), tmp_path / "wide.ckpt")
    gender = _saved(GenderClassifierModule(backbone="small", input_size=32), tmp_path / "g.ckpt", "gender_classifier")
    assert other_shape is not None and gender is not None
    plain = str(tmp_path / "plain.ckpt")
    cases = [(["age_regressor", str(out), plain, str(tmp_path / "wide.ckpt")], "has input_size=48, expected 32"),
             (["age_regressor", str(out), plain, str(tmp_path / "g.ckpt")], "holds a 'gender_classifier' module"),
             (["age_regressor", str(out), plain], "1 source(s) given: expected 2 or more"),
             (["face_net", str(out), plain, plain], "kind='face_net' invalid"),
             (["age_regressor", str(tmp_path / "no" / "j.ckpt"), plain, plain], "does not exist")]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()
    out.write_bytes(b"keep")
    assert main(["age_regressor", str(out), plain, plain]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep"


def test_gender_classifiers_join_into_one_whose_logits_are_the_members_mean(tmp_path):
    pl.seed_everything(1)
    sources = [_saved(GenderClassifierModule(backbone="small", input_size=32, domain_weight=weight),
                      tmp_path / f"g{i}.ckpt", "gender_classifier") for i, weight in enumerate((0.0, 3.0))]
    out = write_joined("gender_classifier", tmp_path / "g.ckpt", [str(tmp_path / "g0.ckpt"), str(tmp_path / "g1.ckpt")])
    joined = load_module(str(out), "gender_classifier")
    assert joined.hparams.members == 2 and joined.hparams.domain_weight == 0.0
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = torch.stack([module(x) for module in sources]).mean(0)
        assert torch.allclose(joined(x), expected, atol=1e-5)
        assert not torch.allclose(sources[0](x), sources[1](x), atol=1e-3)  # the mean is of two different nets
        assert torch.allclose(joined.predict_step(x, 0), expected.softmax(1)[:, 1], atol=1e-5)
