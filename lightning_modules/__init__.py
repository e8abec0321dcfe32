"""LightningModules ("systems") by registry name; plain nn.Modules live in ``nets/``.

Imports are lazy so that ``--help`` and the config loader stay fast. This package also registers
the one datamodule that needs a trained module (``latent_codes``: AE codes for the l-GAN).
"""
from datamodules import DATAMODULES
from utils.registry import Registry

MODULES = Registry("module", {
    "autoencoder": "lightning_modules.autoencoder:AutoencoderModule",
    "latent_gan": "lightning_modules.latent_gan:LatentGANModule",
    "classifier": "lightning_modules.classifier:DigitClassifierModule",
    "age_regressor": "lightning_modules.face_attributes:AgeRegressorModule",
    "gender_classifier": "lightning_modules.face_attributes:GenderClassifierModule",
    "realism_discriminator": "lightning_modules.realism:RealismDiscriminatorModule",
    "transform_rnn": "lightning_modules.transform_rnn:TransformRNNModule",
    "face_gan": "lightning_modules.face_gan:FaceGANModule",
})
DATAMODULES.register("latent_codes", "lightning_modules.latent_codes:LatentCodesDataModule")
available_modules = MODULES.names
get_module_class = MODULES.get
