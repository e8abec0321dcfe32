"""Load a run config: schema defaults -> experiment YAML -> values set by code -> ``key=value`` overrides.

Every error is a :class:`ConfigError` whose one-line message names the key, what arrived and
what is allowed; fixed choices (``Literal`` hints, in the schema or in a section's class), ranges
(``Annotated[int, Range(1)]`` hints) and, for every key, finite floats and positive sizes
(:func:`configs.schema_tools.check_values`) are checked here, before anything is built or trained. The result is a plain ``dict`` (resolved),
safe to pass to constructors and to store in checkpoints (torch loads them with ``weights_only``).
"""
import dataclasses
import logging
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from configs.schema_tools import check_choices, check_values, omegaconf_schema
from utils.errors import UserError

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).resolve().parent
RUN_CONFIG = "config.yaml"


class ConfigError(UserError):
    """A config that cannot be used; the message names the key and the allowed values."""


def available_configs() -> List[str]:
    """Names of the experiment YAML files shipped in ``configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(name_or_path: str) -> Path:
    """A shipped experiment name, a YAML path, or a run folder holding ``config.yaml``."""
    path = Path(name_or_path)
    if path.is_dir() and (path / RUN_CONFIG).is_file():
        return path / RUN_CONFIG
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file '{name_or_path}' does not exist")
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"unknown experiment '{name_or_path}'; expected one of {available_configs()}, "
        "a .yaml file or a run folder holding config.yaml"
    )


def _nested(values: Mapping[str, Any]) -> Dict[str, Any]:
    # {"env.tasks": [...], "seed": 1} -> {"env": {"tasks": [...]}, "seed": 1}
    out: Dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def load_config(
    name_or_path: str,
    overrides: Sequence[str] = (),
    schema: type = None,
    sections: Optional[Mapping[str, Callable[[str], type]]] = None,
    values: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Merge ``schema`` defaults, the YAML, ``values`` and ``overrides``; validate; return a plain dict.

    Args:
        name_or_path: see :func:`config_path`.
        overrides: ``key=value`` strings (OmegaConf dot-list syntax), applied last; ``key={}`` empties a
            mapping (a merge would keep its keys).
        schema: the dataclass of the whole config (default :class:`configs.schema.FitConfig`).
        sections: section key (e.g. ``"module"``) -> lookup ``name -> class`` (or function or params
            dataclass); that section's keys are checked against it and filled with its defaults.
        values: dotted key -> Python value, set by code (e.g. a benchmark wiring its stages) before
            ``overrides``, so a user's override still wins.
    """
    if schema is None:
        from configs.schema import FitConfig as schema
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value")
    base = OmegaConf.structured(omegaconf_schema(schema))
    with _readable_errors(base):
        yaml_cfg = _load_yaml(config_path(name_or_path))
        layers = [OmegaConf.create(_nested(values or {})), OmegaConf.from_dotlist(list(overrides))]
        for layer in layers:
            _drop_replaced_sections(yaml_cfg, layer, sections or {})
        cfg = OmegaConf.merge(base, yaml_cfg, layers[0])
        for item in overrides:  # in order; a merge keeps a mapping's other keys, so ``key={}`` empties it
            key, _, value = item.partition("=")
            if value.strip() == "{}":
                OmegaConf.update(cfg, key, {}, merge=False)
            else:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    _raise_bad_choice(check_choices(schema, container))
    for key, lookup in (sections or {}).items():
        container[key] = validate_section(key, container.get(key) or {}, lookup)
    _raise_bad_choice(check_values(container))  # NaN/inf floats and 0 or negative sizes, in every section
    return container


def _load_yaml(path: Path) -> DictConfig:
    try:
        return OmegaConf.load(path)
    except OmegaConfBaseException:
        raise
    except Exception as err:  # a YAML syntax error: one line naming the file and the place
        detail = " ".join(str(err).split())
        raise ConfigError(f"config file '{path}' is not valid YAML: {detail}") from None


def _raise_bad_choice(problem: Optional[str], prefix: str = "") -> None:
    if problem is not None:
        raise ConfigError(f"{prefix}{problem}")


def _drop_replaced_sections(yaml_cfg: DictConfig, layer: DictConfig, sections: Mapping[str, Any]) -> None:
    # `agent.name=ppo` on a TD3 YAML: the YAML's other agent keys belong to TD3, so they go.
    for key in sections:
        new = OmegaConf.select(layer, f"{key}.name")
        old = OmegaConf.select(yaml_cfg, f"{key}.name")
        if new is not None and old is not None and new != old:
            dropped = sorted(k for k in yaml_cfg[key] if k != "name")
            log.warning("%s.name changed from '%s' to '%s': the experiment's %s settings %s are not used",
                        key, old, new, key, dropped)
            yaml_cfg[key] = {"name": new}


def validate_section(key: str, section: Dict[str, Any], lookup: Callable[[str], Any]) -> Dict[str, Any]:
    """Check ``section`` against what ``lookup(section['name'])`` accepts; fill its defaults."""
    if "name" not in section:
        raise ConfigError(f"'{key}.name' is missing: it picks the class that '{key}' configures")
    try:
        target = lookup(section["name"])
    except KeyError as err:
        raise ConfigError(f"{key}.name: {err.args[0]}") from None
    node = OmegaConf.structured(omegaconf_schema(target))
    values = {k: v for k, v in section.items() if k != "name"}
    with _readable_errors(node, prefix=key):
        merged = OmegaConf.merge(node, values)
        out = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    _raise_bad_choice(check_choices(target, out, prefix=f"{key}."))
    return {"name": section["name"], **out}


def with_section_defaults(saved: Dict[str, Any], sections: Mapping[str, Callable[[str], Any]]) -> Dict[str, Any]:
    """A saved run config whose registry sections (e.g. ``env``, ``agent``) get the keys their class or builder
    accepts now at the defaults (:func:`validate_section`), so a run saved before a key existed (one whose default
    keeps the old behaviour) still matches, and resumes as, the same config. A section that no longer validates
    stays as saved, and then differs."""
    out = dict(saved)
    for key, lookup in sections.items():
        if isinstance(out.get(key), dict) and "name" in out[key]:
            try:
                out[key] = validate_section(key, out[key], lookup)
            except UserError as err:
                log.info("saved section %s kept as saved: %s", key, err)
    return out


class _readable_errors:
    """Turn OmegaConf's multi-line exceptions into one-line ConfigErrors naming the key."""

    def __init__(self, node: DictConfig, prefix: str = ""):
        self.node, self.prefix = node, prefix

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, OmegaConfBaseException):
            return False
        full_key = ".".join(p for p in (self.prefix, exc.full_key or exc.key or "") if p)
        if isinstance(exc, MissingMandatoryValue):
            raise ConfigError(f"'{full_key}' is required but has no value") from None
        if isinstance(exc, ConfigKeyError):
            raise ConfigError(
                f"unknown key '{full_key}'; allowed keys here: {self._allowed(exc.full_key or '')}"
            ) from None
        detail = str(exc.msg if hasattr(exc, "msg") else exc).splitlines()[0]
        raise ConfigError(f"bad value for '{full_key}': {detail}") from None

    def _allowed(self, full_key: str) -> List[str]:
        parent = self.node
        for part in full_key.split(".")[:-1]:
            child = parent.get(part) if isinstance(parent, DictConfig) else None
            if not isinstance(child, DictConfig):
                break
            parent = child
        return sorted(str(k) for k in parent.keys())


def as_dataclass(cls: type, value: Any) -> Any:
    """``value`` (an instance of dataclass ``cls`` or a plain dict, e.g. a loaded config section) as ``cls``,
    nested dataclass fields included. Unknown keys raise :class:`ConfigError`."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected the settings of {cls.__name__} (a mapping), got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} for {cls.__name__}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: as_dataclass(hints[k], v) if dataclasses.is_dataclass(hints[k]) else v for k, v in value.items()}
    return cls(**kwargs)
