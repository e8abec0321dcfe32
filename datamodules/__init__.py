"""LightningDataModules by registry name (lazy imports).

Datamodules here read data only; one that needs a trained module (the AE codes of the latent GAN)
lives in ``lightning_modules`` and registers itself here.
"""
from utils.registry import Registry

DATAMODULES = Registry("datamodule", {
    "mnist": "datamodules.mnist:MNISTDataModule",
    "mnist_pairs": "datamodules.mnist_pairs:MNISTPairsDataModule",
    "utkface": "datamodules.faces:UTKFaceDataModule",
    "imdb_wiki": "datamodules.faces:ImdbWikiDataModule",
})
available_datamodules = DATAMODULES.names
get_datamodule_class = DATAMODULES.get
