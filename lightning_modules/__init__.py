"""LightningModules ("systems") by registry name; plain nn.Modules live in ``nets/``.

Imports are lazy so that ``--help`` and the config loader stay fast.
"""
from importlib import import_module
from typing import List

_MODULES = {
    "autoencoder": "lightning_modules.autoencoder:AutoencoderModule",
    "latent_gan": "lightning_modules.latent_gan:LatentGANModule",
    "classifier": "lightning_modules.classifier:DigitClassifierModule",
    "age_regressor": "lightning_modules.face_attributes:AgeRegressorModule",
    "gender_classifier": "lightning_modules.face_attributes:GenderClassifierModule",
    "realism_discriminator": "lightning_modules.realism:RealismDiscriminatorModule",
    "transform_rnn": "lightning_modules.transform_rnn:TransformRNNModule",
}


def available_modules() -> List[str]:
    return sorted(_MODULES)


def get_module_class(name: str) -> type:
    """The LightningModule class registered as ``name``."""
    if name not in _MODULES:
        raise KeyError(f"unknown module '{name}'; expected one of {available_modules()}")
    mod, cls = _MODULES[name].split(":")
    return getattr(import_module(mod), cls)
