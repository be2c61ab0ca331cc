"""Settings and phrase files: the only package that reads YAML and the environment."""

from config.loading import load_settings
from config.settings import ConfigError, Settings, setting_fields

__all__ = ["ConfigError", "Settings", "load_settings", "setting_fields"]
