"""Settings and phrase files: the only package that reads YAML and the environment."""

from config.settings import ConfigError, Settings, load_settings, setting_fields

__all__ = ["ConfigError", "Settings", "load_settings", "setting_fields"]
