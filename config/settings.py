"""Typed settings: defaults, then a YAML file, then HUIYIN_* environment variables."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from config.backends import Backend, BackendConfigError, parse_backends

ENV_PREFIX = "HUIYIN_"
# Names a settings file; not a setting itself.
CONFIG_ENV = "HUIYIN_CONFIG"
DEFAULT_SETTINGS_FILE = Path(__file__).with_name("settings.yaml")
# Engine names the `engines` setting accepts (synth/registry.py builds each).
ENGINES = ("fastspeech2", "sambert", "piper")
DEFAULT_ENGINES = ("fastspeech2",)


class ConfigError(ValueError):
    """A setting is unknown or has the wrong type; the message names it and its source."""


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


def _no_mapping() -> Mapping[str, str]:
    return types.MappingProxyType({})


def _default_models_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "huiyin" / "models"


@dataclass(frozen=True)
class Settings:
    """Every setting Huiyin reads. Each field's `doc` metadata is its reference text."""

    host: str = field(default="127.0.0.1", metadata=_doc("Address the gateway listens on."))
    port: int = field(default=8080, metadata=_doc("TCP port the gateway listens on."))
    data_dir: Path = field(
        default=Path("data"), metadata=_doc("Folder for the phrase store and its index.")
    )
    database_url: str | None = field(
        default=None,
        metadata=_doc("SQLAlchemy URL of the phrase index: unset uses SQLite in data_dir; "
                      "`postgresql+psycopg://user@host/db` for an index several replicas "
                      "share (password from PGPASSWORD or ~/.pgpass, not the URL)."),
    )
    database_pool_size: int = field(
        default=5, metadata=_doc("Connections kept open to a PostgreSQL index (SQLite: unused)."),
    )
    database_max_overflow: int = field(
        default=5,
        metadata=_doc("Connections opened beyond database_pool_size under load, then closed."),
    )
    database_pool_timeout: float = field(
        default=10.0, metadata=_doc("Seconds to wait for a free database connection."),
    )
    database_connect_timeout: int = field(
        default=5, metadata=_doc("Seconds to wait for the database server to answer a connect."),
    )
    audio_store: str | None = field(
        default=None,
        metadata=_doc("Where the audio is: unset keeps it in data_dir/audio; "
                      "`s3://bucket/prefix` puts it in an S3-compatible bucket (credentials "
                      "from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)."),
    )
    s3_endpoint_url: str | None = field(
        default=None,
        metadata=_doc("The S3 endpoint (MinIO, Ceph, SeaweedFS, OSS, COS); unset is AWS."),
    )
    s3_region: str | None = field(default=None, metadata=_doc("The bucket's region."))
    s3_timeout: float = field(
        default=10.0, metadata=_doc("Seconds to wait for the bucket to connect or answer."),
    )
    local_cache_bytes: int = field(
        default=1 << 30,
        metadata=_doc("Bytes of audio from the bucket kept in data_dir/bucket-cache, so "
                      "hits need no bucket call (0: none)."),
    )
    cache_max_bytes: int = field(
        default=2 << 30,
        metadata=_doc("Byte budget of stored audio; least recently used unpinned phrases "
                      "are evicted beyond it (0 = no limit)."),
    )
    hot_set_bytes: int = field(
        default=64 << 20,
        metadata=_doc("Bytes of encoded audio kept in memory for the most requested prompts."),
    )
    models_dir: Path = field(
        default_factory=_default_models_dir,
        metadata=_doc("Folder where prepared voice models are cached (one sub-folder per recipe)."),
    )
    threads: int = field(
        default=0, metadata=_doc("ONNX Runtime intra-op threads per engine; 0 uses every core.")
    )
    lexicon: Path | None = field(
        default=None,
        metadata=_doc("Optional pronunciation lexicon (TSV: word, then pinyin with tone digits)."),
    )
    engines: tuple[str, ...] = field(
        default=DEFAULT_ENGINES,
        metadata=_doc(f"Engines to load, each one failing startup if it cannot load: "
                      f"{', '.join(ENGINES)} (comma-separated in the env)."),
    )
    sambert_model_dir: Path | None = field(
        default=None,
        metadata=_doc("Local ModelScope model folder (with configuration.json) for the "
                      "'sambert' engine."),
    )
    sambert_model_id: str | None = field(
        default=None,
        metadata=_doc("ModelScope model id (owner/name) for the 'sambert' engine, looked up in "
                      "the local ModelScope cache (MODELSCOPE_CACHE); never downloaded."),
    )
    piper_model: Path | None = field(
        default=None,
        metadata=_doc("Piper voice (.onnx, its .onnx.json config beside it) for the 'piper' "
                      "engine; unset uses the packaged US English voice 'joe'."),
    )
    default_voice: str | None = field(
        default=None,
        metadata=_doc("Voice used when a request names none; unset uses the first engine's "
                      "first voice."),
    )
    max_text_length: int = field(
        default=1024, metadata=_doc("Longest text, in characters, one request may synthesize.")
    )
    max_body_bytes: int = field(
        default=64 << 10, metadata=_doc("Largest request body accepted, in bytes.")
    )
    keepalive_timeout: float = field(
        default=15.0,
        metadata=_doc("Seconds an idle connection stays open after a response, waiting for "
                      "the next request."),
    )
    header_timeout: float = field(
        default=20.0,
        metadata=_doc("Seconds a client has to send a whole request head: from opening the "
                      "connection, or from the first byte of a later request."),
    )
    workers: int = field(
        default=1,
        metadata=_doc("Engine instances per engine, each running one synthesis at a time; "
                      "the cores are shared among them."),
    )
    queue_size: int = field(
        default=32, metadata=_doc("Waiting syntheses per worker before requests get 503.")
    )
    synthesis_deadline: float = field(
        default=30.0, metadata=_doc("Seconds a request may wait and synthesize before 504.")
    )
    http_max_age: int = field(
        default=86400, metadata=_doc("Cache-Control max-age of /tts responses, in seconds.")
    )
    phrase_max_age: int = field(
        default=300,
        metadata=_doc("Cache-Control max-age of /phrases responses (their text may change)."),
    )
    openai_voices: Mapping[str, str] = field(
        default_factory=_no_mapping,
        metadata=_doc("OpenAI voice names mapped to ours for /v1/audio/speech: a mapping in YAML "
                      "({alloy: baker, nova: baker}), 'alloy=baker,nova=baker' in the env; "
                      "unmapped OpenAI names use the default voice."),
    )
    admin_token: str | None = field(
        default=None, metadata=_doc("Bearer token for the admin routes; unset disables them.")
    )
    phrases: tuple[Path, ...] = field(
        default=(), metadata=_doc("Phrase YAML files to pre-warm (comma-separated in the env).")
    )
    log_level: str = field(default="info", metadata=_doc("Log level: debug, info, warning, error."))
    fast_hits: bool = field(
        default=True,
        metadata=_doc("Answer a repeated /tts URL whose audio is in memory as soon as its request "
                      "arrives, before the full request cycle (the hit lane)."),
    )

    backends: tuple[Backend, ...] = field(
        default=(),
        metadata=_doc("Remote backends, each an engine with its own voices: a list of entries "
                      "(see Backends below; a JSON list in the environment)."),
    )

    def __post_init__(self) -> None:
        # Stored read-only whatever form it came in: Settings may also be built directly,
        # with the environment's 'name=value,...' text.
        object.__setattr__(
            self, "openai_voices", _mapping("openai_voices", self.openai_voices, "Settings")
        )

    def resolved_threads(self) -> int:
        """The intra-op thread count to use: the setting, or every core when it is 0."""
        return self.threads if self.threads > 0 else (os.cpu_count() or 1)


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The settings' dataclass fields, in declaration order (for docs and validation)."""
    return dataclasses.fields(Settings)


_HINTS = typing.get_type_hints(Settings)


def _mapping(name: str, raw: object, source: str) -> Mapping[str, str]:
    """A read-only mapping from YAML ({a: b}) or the environment ('a=b,c=d'); unset is empty."""
    where = f"{source}: setting '{name}'"
    pairs: list[tuple[object, object]] = []
    if isinstance(raw, str):
        for item in raw.split(","):
            if not item.strip():
                continue  # a trailing comma
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"{where}: '{item.strip()}' must be name=value")
            pairs.append((key, value))
    elif isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif raw is not None:
        raise ConfigError(f"{where} must be a mapping of name: value, got {raw!r}")
    out: dict[str, str] = {}
    for raw_key, raw_value in pairs:
        if not isinstance(raw_key, str) or not isinstance(raw_value, str):
            raise ConfigError(f"{where}: names and values must be strings, "
                              f"got {raw_key!r}: {raw_value!r}")
        key, value = raw_key.strip(), raw_value.strip()
        if not key or not value:
            raise ConfigError(f"{where}: every entry needs a name and a value, got "
                              f"{key!r}: {value!r}")
        if key in out:
            raise ConfigError(f"{where}: '{key}' is mapped twice")
        out[key] = value
    return types.MappingProxyType(out)


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Convert a raw YAML or environment value to the field's declared type."""
    hint = _HINTS[name]
    if name == "backends":
        try:
            return parse_backends(raw, source)
        except BackendConfigError as exc:
            raise ConfigError(str(exc)) from None
    if typing.get_origin(hint) is Mapping:
        return _mapping(name, raw, source)
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
    for name in ("workers", "queue_size", "max_body_bytes"):
        if values.get(name) is not None and values[name] < 1:
            raise ConfigError(f"{source}: setting '{name}' must be at least 1")
    if values.get("synthesis_deadline") is not None and values["synthesis_deadline"] <= 0:
        raise ConfigError(f"{source}: setting 'synthesis_deadline' must be positive")
    for name in ("keepalive_timeout", "header_timeout"):
        if values.get(name) is not None and values[name] <= 0:
            raise ConfigError(f"{source}: setting '{name}' must be positive")
    for name in ("cache_max_bytes", "hot_set_bytes", "http_max_age", "phrase_max_age"):
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
    store = values.get("audio_store")
    if store is not None and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?", store):
        raise ConfigError(f"{source}: setting 'audio_store' must be s3://bucket[/prefix] "
                          "(a lower-case bucket name) or unset for the local folder")
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


def _validate_combination(values: Mapping[str, Any]) -> None:
    """Checks across settings, on the final values (each may come from a different source)."""
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
                raise _unknown_key(str(key), names, file)
            values[key] = _coerce(key, raw, str(file))
        _validate(values, str(file))

    env_values: dict[str, Any] = {}
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key not in names:
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
