"""Load a run config: schema defaults -> experiment YAML -> ``key=value`` overrides.

Every error is a :class:`ConfigError` whose one-line message names the key, what arrived and
what is allowed. The result is a plain ``dict`` (resolved), safe to pass to constructors and to
store in checkpoints (torch >= 2.6 loads them with ``weights_only=True``).
"""
import dataclasses
import inspect
import logging
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).resolve().parent
RUN_CONFIG = "config.yaml"


class ConfigError(ValueError):
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


def load_config(
    name_or_path: str,
    overrides: Sequence[str] = (),
    schema: type = None,
    sections: Optional[Mapping[str, Callable[[str], type]]] = None,
) -> Dict[str, Any]:
    """Merge ``schema`` defaults, the YAML and ``overrides``; validate; return a plain dict.

    ``sections`` maps a section key (e.g. ``"module"``) to a lookup ``name -> class``; that
    section's keys are checked against the class's ``__init__`` and filled with its defaults.
    """
    if schema is None:
        from configs.schema import FitConfig as schema
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value")
    base = OmegaConf.structured(schema)
    with _readable_errors(base):
        yaml_cfg = OmegaConf.load(config_path(name_or_path))
        dotlist = OmegaConf.from_dotlist(list(overrides))
        _drop_replaced_sections(yaml_cfg, dotlist, sections or {})
        cfg = OmegaConf.merge(base, yaml_cfg, dotlist)
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    for key, lookup in (sections or {}).items():
        container[key] = validate_section(key, container.get(key) or {}, lookup)
    return container


def _drop_replaced_sections(yaml_cfg: DictConfig, overrides: DictConfig, sections: Mapping[str, Any]) -> None:
    # `agent.name=ppo` on a TD3 YAML: the YAML's other agent keys belong to TD3, so they go.
    for key in sections:
        new = OmegaConf.select(overrides, f"{key}.name")
        old = OmegaConf.select(yaml_cfg, f"{key}.name")
        if new is not None and old is not None and new != old:
            dropped = sorted(k for k in yaml_cfg[key] if k != "name")
            log.warning("%s.name changed from '%s' to '%s': the experiment's %s settings %s are not used",
                        key, old, new, key, dropped)
            yaml_cfg[key] = {"name": new}


def validate_section(key: str, section: Dict[str, Any], lookup: Callable[[str], type]) -> Dict[str, Any]:
    """Check ``section`` against the signature of ``lookup(section['name'])``; fill defaults."""
    if "name" not in section:
        raise ConfigError(f"'{key}.name' is missing: it picks the class that '{key}' configures")
    try:
        cls = lookup(section["name"])
    except KeyError as err:
        raise ConfigError(f"{key}.name: {err.args[0]}") from None
    node = OmegaConf.structured(signature_schema(cls))
    values = {k: v for k, v in section.items() if k != "name"}
    with _readable_errors(node, prefix=key):
        merged = OmegaConf.merge(node, values)
        out = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    _check_literals(key, cls, out)
    return {"name": section["name"], **out}


def _signature_target(obj: Any) -> Callable:
    return obj.__init__ if inspect.isclass(obj) else obj


def signature_schema(obj: Any) -> type:
    """A dataclass mirroring the typed keyword arguments of a class's ``__init__`` or a function.

    ``Literal`` hints become their base type (membership is checked after the merge).
    """
    if isinstance(obj, Mapping):  # a dict of defaults: types follow the default values
        return dataclasses.make_dataclass("DefaultsConfig", [
            (k, _default_type(v), dataclasses.field(default_factory=lambda d=v: d)) for k, v in obj.items()])
    target = _signature_target(obj)
    hints = typing.get_type_hints(target)
    fields = []
    for name, param in inspect.signature(target).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = _omegaconf_type(hints.get(name, Any))
        if param.default is inspect.Parameter.empty:
            fields.append((name, hint))
        else:
            default = param.default
            fields.append((name, hint, dataclasses.field(default_factory=lambda d=default: d)))
    fields.sort(key=len)  # dataclasses need fields without defaults first
    return dataclasses.make_dataclass(f"{obj.__name__}Config", fields)


def _default_type(value: Any) -> Any:
    return type(value) if isinstance(value, (bool, int, float, str)) else Any


def _omegaconf_type(hint: Any) -> Any:
    if typing.get_origin(hint) is typing.Literal:
        return type(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (tuple, typing.Tuple):
        return Any
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and float in args and int not in args:
        return typing.Union[(int, *args)]  # OmegaConf's unions are strict: `p1=5` must fit Union[float, str]
    return hint


def _check_literals(key: str, obj: Any, values: Dict[str, Any]) -> None:
    if isinstance(obj, Mapping):
        return
    for name, hint in typing.get_type_hints(_signature_target(obj)).items():
        if typing.get_origin(hint) is typing.Literal and values.get(name) not in typing.get_args(hint):
            raise ConfigError(
                f"{key}.{name}={values.get(name)!r} is not allowed; expected one of {list(typing.get_args(hint))}"
            )


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
