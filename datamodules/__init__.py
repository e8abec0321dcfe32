"""LightningDataModules by registry name (lazy imports)."""
from importlib import import_module
from typing import List

_DATAMODULES = {
    "mnist": "datamodules.mnist:MNISTDataModule",
    "mnist_pairs": "datamodules.mnist_pairs:MNISTPairsDataModule",
    "latent_codes": "datamodules.latent_codes:LatentCodesDataModule",
    "utkface": "datamodules.faces:UTKFaceDataModule",
    "imdb_wiki": "datamodules.faces:ImdbWikiDataModule",
}


def available_datamodules() -> List[str]:
    return sorted(_DATAMODULES)


def get_datamodule_class(name: str) -> type:
    """The LightningDataModule class registered as ``name``."""
    if name not in _DATAMODULES:
        raise KeyError(f"unknown datamodule '{name}'; expected one of {available_datamodules()}")
    mod, cls = _DATAMODULES[name].split(":")
    return getattr(import_module(mod), cls)
