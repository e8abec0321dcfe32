"""Experiment YAML files, schema dataclasses and the loader (no other logic)."""
from configs.loader import ConfigError, available_configs, config_path, load_config

__all__ = ["ConfigError", "available_configs", "config_path", "load_config"]
