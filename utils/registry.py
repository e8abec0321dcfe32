"""Small name registries: a name maps to ``"package.module:attribute"``, imported on first use.

A lower package owns a registry and an upper one may add to it (as gymnasium's registry works),
so no package needs to import the one above it; ``--help`` and the config loader stay fast.
"""
from importlib import import_module
from typing import Any, Callable, Dict, List, Mapping

from utils.errors import UnknownNameError


class Registry:
    """``kind`` names what is registered (used in messages); ``entries`` maps names to targets."""

    def __init__(self, kind: str, entries: Dict[str, str]):
        self.kind, self._entries = kind, dict(entries)

    def register(self, name: str, target: str) -> None:
        """Add ``name -> "module:attribute"`` (a name registered twice must point to the same target)."""
        if self._entries.get(name, target) != target:
            raise ValueError(f"{self.kind} '{name}' is registered already, as {self._entries[name]}")
        self._entries[name] = target

    def names(self) -> List[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def target(self, name: str) -> str:
        """The ``"module:attribute"`` string of ``name``."""
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} '{name}'; expected one of {self.names()}")
        return self._entries[name]

    def get(self, name: str) -> Any:
        """Import and return what ``name`` points to."""
        module, attr = self.target(name).split(":")
        return getattr(import_module(module), attr)


def build_from(table: Mapping[str, Callable[..., Any]], kind: str, name: str, **kwargs: Any) -> Any:
    """``table[name](**kwargs)`` for a table of factories; an unknown ``name`` is one error naming the choices."""
    if name not in table:
        raise UnknownNameError(f"unknown {kind} '{name}'; expected one of {sorted(table)}")
    return table[name](**kwargs)
