"""Loading settings: defaults, then a YAML file, then HUIYIN_* environment variables, then
the command line; every value converted to its field's type and checked, naming its source."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from config.backends import BackendConfigError, parse_backends
from config.settings import (
    CONFIG_ENV,
    DEFAULT_ENGINES,
    DEFAULT_SETTINGS_FILE,
    ENGINES,
    ENV_PREFIX,
    REMOVED_SETTINGS,
    STORE_TEXT,
    ConfigError,
    Settings,
    mapping_setting,
    setting_fields,
)

_HINTS = typing.get_type_hints(Settings)
COSYVOICE_RATES = (8000, 16000, 22050, 24000)
log = logging.getLogger("huiyin.config")


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Convert a raw YAML or environment value to the field's declared type."""
    hint = _HINTS[name]
    if name == "backends":
        try:
            return parse_backends(raw, source)
        except BackendConfigError as exc:
            raise ConfigError(str(exc)) from None
    if typing.get_origin(hint) is Mapping:
        return mapping_setting(name, raw, source)
    optional = False
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    if raw is None or (optional and isinstance(raw, str) and raw == ""):
        if optional:
            return None
        raise ConfigError(f"{source}: setting '{name}' must not be empty")
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple):
                raise TypeError
            texts = [str(i).strip() for i in items if str(i).strip()]
            if typing.get_args(hint)[0] is Path:
                return tuple(Path(t).expanduser() for t in texts)
            return tuple(texts)
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError
        if hint is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise TypeError
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise TypeError
            return float(raw)
        if hint is Path:
            if not isinstance(raw, str | Path):
                raise TypeError
            return Path(raw).expanduser()
        if hint is str:
            if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                raise TypeError
            return str(raw)
    except (TypeError, ValueError):
        pass
    else:
        raise AssertionError(f"unhandled settings type for {name}: {hint}")
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{source}: setting '{name}' must be {type_name}, got {raw!r}")


def _validate(values: Mapping[str, Any], source: str) -> None:
    if values.get("port") is not None and not 0 < values["port"] < 65536:
        raise ConfigError(f"{source}: setting 'port' must be between 1 and 65535")
    if values.get("threads") is not None and values["threads"] < 0:
        raise ConfigError(f"{source}: setting 'threads' must be 0 (all cores) or more")
    if values.get("workers") is not None and values["workers"] < 0:
        raise ConfigError(f"{source}: setting 'workers' must be 0 (chosen from the cores) or more")
    for name in ("queue_size", "max_body_bytes", "max_clip_bytes"):
        if values.get(name) is not None and values[name] < 1:
            raise ConfigError(f"{source}: setting '{name}' must be at least 1")
    if values.get("synthesis_deadline") is not None and values["synthesis_deadline"] <= 0:
        raise ConfigError(f"{source}: setting 'synthesis_deadline' must be positive")
    for name in ("keepalive_timeout", "header_timeout"):
        if values.get(name) is not None and values[name] <= 0:
            raise ConfigError(f"{source}: setting '{name}' must be positive")
    if values.get("store_text") is not None and values["store_text"] not in STORE_TEXT:
        raise ConfigError(f"{source}: setting 'store_text' must be {', '.join(STORE_TEXT[:-1])} "
                          f"or {STORE_TEXT[-1]}")
    if values.get("max_ttl") is not None and values["max_ttl"] < 1:
        raise ConfigError(f"{source}: setting 'max_ttl' must be at least 1 (seconds)")
    for name in ("cache_max_bytes", "hot_set_bytes", "http_max_age", "phrase_max_age", "tts_ttl"):
        if values.get(name) is not None and values[name] < 0:
            raise ConfigError(f"{source}: setting '{name}' must be 0 or more")
    for name in ("database_pool_size", "database_connect_timeout"):
        if values.get(name) is not None and values[name] < 1:
            raise ConfigError(f"{source}: setting '{name}' must be at least 1")
    for name in ("database_max_overflow", "local_cache_bytes"):
        if values.get(name) is not None and values[name] < 0:
            raise ConfigError(f"{source}: setting '{name}' must be 0 or more")
    for name in ("database_pool_timeout", "s3_timeout"):
        if values.get(name) is not None and values[name] <= 0:
            raise ConfigError(f"{source}: setting '{name}' must be positive")
    # The rates the store makes WAV variants at: the CosyVoice routes answer one's samples.
    if values.get("cosyvoice_rate") is not None and values["cosyvoice_rate"] not in COSYVOICE_RATES:
        raise ConfigError(f"{source}: setting 'cosyvoice_rate' must be one of "
                          f"{', '.join(map(str, COSYVOICE_RATES))}")
    store = values.get("audio_store")
    if store is not None and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?", store):
        raise ConfigError(f"{source}: setting 'audio_store' must be s3://bucket[/prefix] "
                          "(a lower-case bucket name) or unset for the local folder")
    _validate_access(values, source)
    if values.get("max_text_length") is not None and values["max_text_length"] < 1:
        raise ConfigError(f"{source}: setting 'max_text_length' must be at least 1")
    level = values.get("log_level")
    if level is not None and level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"{source}: setting 'log_level' must be debug, info, warning or error")
    engines = values.get("engines")
    if engines is not None:
        if not engines:
            raise ConfigError(f"{source}: setting 'engines' must name at least one of: "
                              f"{', '.join(ENGINES)}")
        for name in engines:
            if name not in ENGINES:
                raise ConfigError(f"{source}: setting 'engines': unknown engine '{name}'; "
                                  f"known: {', '.join(ENGINES)}")
            if engines.count(name) > 1:
                raise ConfigError(f"{source}: setting 'engines' names '{name}' twice")


def _validate_access(values: Mapping[str, Any], source: str) -> None:
    if values.get("access") is not None and values["access"] not in ("open", "keys"):
        raise ConfigError(f"{source}: setting 'access' must be open or keys")
    for secret in values.get("url_signing_secret", ()):
        if len(secret) < 16:
            raise ConfigError(f"{source}: setting 'url_signing_secret': every secret needs at "
                              "least 16 characters (`huiyin keys secret` makes one)")
    if values.get("url_signing_bucket") is not None and values["url_signing_bucket"] < 1:
        raise ConfigError(f"{source}: setting 'url_signing_bucket' must be at least 1 (seconds)")
    for name in ("rate_limit_misses", "rate_limit_characters"):
        if values.get(name) is not None and values[name] < 0:
            raise ConfigError(f"{source}: setting '{name}' must be 0 (no limit) or more")
    if values.get("rate_limit_burst") is not None and values["rate_limit_burst"] < 1:
        raise ConfigError(f"{source}: setting 'rate_limit_burst' must be at least 1")
    for proxy in values.get("trusted_proxies", ()):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"{source}: setting 'trusted_proxies': '{proxy[:80]}' is not an "
                              "address or a network (10.0.0.0/8)") from None
    for origin in values.get("cors_origins", ()):
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?", origin):
            raise ConfigError(f"{source}: setting 'cors_origins': '{origin[:80]}' is not an "
                              "origin (scheme://host[:port], no path)")


def _validate_combination(values: Mapping[str, Any]) -> None:
    """Checks across settings, on the final values (each may come from a different source)."""
    ttl, longest = values.get("tts_ttl", 0), values.get("max_ttl", Settings.max_ttl)
    if ttl > longest:
        raise ConfigError(f"setting 'tts_ttl' ({ttl}) is longer than setting 'max_ttl' ({longest})")
    if "sambert" in values.get("engines", DEFAULT_ENGINES):
        model_dir, model_id = values.get("sambert_model_dir"), values.get("sambert_model_id")
        if model_dir is None and model_id is None:
            raise ConfigError(
                "setting 'engines' includes 'sambert', which needs setting 'sambert_model_dir' "
                "(a local model folder) or 'sambert_model_id' (a model in the ModelScope cache)"
            )
        if model_dir is not None and model_id is not None:
            raise ConfigError(
                "settings 'sambert_model_dir' and 'sambert_model_id' are both set; set one"
            )
    for backend in values.get("backends", ()):
        if backend.name in ENGINES:
            raise ConfigError(f"setting 'backends': '{backend.name}' is the name of an "
                              "in-process engine; name the backend otherwise")


class _SettingsLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping, or a YAML error at the second occurrence of a key."""
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"'{key_node.value}' is given twice", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _closest(word: str, names: set[str]) -> str | None:
    close = difflib.get_close_matches(word, sorted(names), n=1)
    return close[0] if close else None


def _unknown_key(key: str, names: set[str], source: Path) -> ConfigError:
    close = _closest(key, names)
    hint = f"; did you mean '{close}'?" if close else ""
    return ConfigError(f"{source}: unknown setting '{key}'{hint}")


def _unknown_variable(var: str, names: set[str]) -> ConfigError:
    # Refused rather than ignored: a misspelt variable would otherwise change nothing, silently.
    close = _closest(var[len(ENV_PREFIX) :].lower(), names)
    hint = (f"did you mean {ENV_PREFIX}{close.upper()}?" if close
            else "`huiyin config reference` lists the settings")
    return ConfigError(f"environment variable {var} is not a setting; {hint}")


def _removed(key: str, source: str) -> bool:
    """Whether a key names a setting that is gone (warned about: it is ignored)."""
    if key not in REMOVED_SETTINGS:
        return False
    log.warning("%s: setting '%s' no longer exists and is ignored (%s); remove it",
                source, key, REMOVED_SETTINGS[key])
    return True


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from defaults, a YAML file, HUIYIN_* variables and explicit overrides."""
    environ = os.environ if environ is None else environ
    names = {f.name for f in setting_fields()}
    values: dict[str, Any] = {}

    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV]).expanduser()
    file = path if path is not None else DEFAULT_SETTINGS_FILE
    if path is not None or file.exists():
        try:
            loaded = yaml.load(file.read_text(encoding="utf-8"), Loader=_SettingsLoader) or {}
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read settings file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: not valid YAML: {problem}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the settings file must be a mapping of key: value")
        for key, raw in loaded.items():
            if key not in names:
                if _removed(str(key), str(file)):
                    continue
                raise _unknown_key(str(key), names, file)
            values[key] = _coerce(key, raw, str(file))
        _validate(values, str(file))

    env_values: dict[str, Any] = {}
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key not in names:
            if _removed(key, f"environment variable {var}"):
                continue
            raise _unknown_variable(var, names)
        env_values[key] = _coerce(key, raw, f"environment variable {var}")
    _validate(env_values, "environment")
    values.update(env_values)

    for key, raw in (overrides or {}).items():
        if key not in names:
            raise ConfigError(f"command line: unknown setting '{key}'")
        if raw is not None:
            values[key] = _coerce(key, raw, "command line")
    _validate(values, "command line")
    _validate_combination(values)
    return Settings(**values)
