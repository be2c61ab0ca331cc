"""Typed settings: every setting, its type, default and reference text (loading them:
config/loading.py)."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.backends import Backend

ENV_PREFIX = "HUIYIN_"
# Names a settings file; not a setting itself.
CONFIG_ENV = "HUIYIN_CONFIG"
DEFAULT_SETTINGS_FILE = Path(__file__).with_name("settings.yaml")
# What the `store_text` setting may say (cache/retention.py).
STORE_TEXT = ("always", "named", "never")
# Engine names the `engines` setting accepts (synth/registry.py builds each).
ENGINES = ("fastspeech2", "sambert", "piper")
DEFAULT_ENGINES = ("fastspeech2",)
# Settings an earlier release had, and why they are gone: a file or variable that still sets
# one starts with a warning, the value ignored.
REMOVED_SETTINGS = {
    "fast_hits": "repeat /tts URLs are answered from the URL memo and the hot set on the "
                 "usual request path; the edge (deploy/nginx) caches in front of it",
}


class ConfigError(ValueError):
    """A setting is unknown or has the wrong type; the message names it and its source."""


# How much longer than max_text_length an SSML document may be, markup included.
SSML_LENGTH_FACTOR = 8


def is_ssml(text: str) -> bool:
    """Whether a request's text is an SSML document: it starts with `<speak` (or with an
    XML declaration, a document type or a comment, which only a document has)."""
    return text.lstrip().lstrip("\ufeff").startswith(("<speak", "<?xml", "<!DOCTYPE", "<!--"))


def text_limit(text: str, max_text_length: int) -> int:
    """The longest a request's text may be: max_text_length, or SSML_LENGTH_FACTOR times it
    for an SSML document (its markup counted)."""
    return max_text_length * SSML_LENGTH_FACTOR if is_ssml(text) else max_text_length


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
    tts_ttl: int = field(
        default=0,
        metadata=_doc("Seconds an unnamed prompt is kept after it is made, then removed with "
                      "its files (0: until evicted). Named and pinned phrases never expire; a "
                      "request's own `ttl` may keep its prompt for less."),
    )
    max_ttl: int = field(
        default=2_592_000,
        metadata=_doc("The longest `ttl` a request may ask for, in seconds (30 days)."),
    )
    store_text: str = field(
        default="named",
        metadata=_doc("What the index keeps of a prompt's text: `always`; `named` (only named "
                      "phrases keep theirs, which operators list and search; other prompts "
                      "keep their key and the text's length); `never`. Rows already stored "
                      "follow at the next maintenance round."),
    )
    hot_set_bytes: int = field(
        default=64 << 20,
        metadata=_doc("Bytes of encoded audio kept in memory for the most requested prompts (audio "
                      "moves in on its second request; a sixteenth holds first requests)."),
    )
    models_dir: Path = field(
        default_factory=_default_models_dir,
        metadata=_doc("Folder where prepared voice models are cached (one sub-folder per recipe)."),
    )
    threads: int = field(
        default=0, metadata=_doc("ONNX Runtime intra-op threads per engine; 0 uses every core the "
                                 "process may run on.")
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
        default=1024,
        metadata=_doc("Longest text, in characters, one request may synthesize. An SSML "
                      "document may be up to 8 times as long with its markup; what it says "
                      "is held to this length."),
    )
    max_body_bytes: int = field(
        default=64 << 10, metadata=_doc("Largest request body accepted, in bytes.")
    )
    max_clip_bytes: int = field(
        default=2 << 20,
        metadata=_doc("Largest reference clip the CosyVoice routes accept (prompt_wav, "
                      "reference_audio), in bytes: a body that carries one may be that much "
                      "larger than max_body_bytes (a third more for base64). 2 MiB holds "
                      "30 s of 16 kHz mono, the longest prompt CosyVoice reads."),
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
        default=0,
        metadata=_doc("Syntheses each engine runs at once; the cores are shared among them. "
                      "0 chooses from the cores: one per core for an engine that takes "
                      "concurrent calls (the default voice: loaded once, its worker runs "
                      "them from one queue), one for any other. Above 1, an engine that "
                      "cannot share is loaded that many times."),
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
    aliyun_voices: Mapping[str, str] = field(
        default_factory=_no_mapping,
        metadata=_doc("Aliyun NLS voice names mapped to ours for /stream/v1/tts and /ws/v1 "
                      "({xiaoyun: baker}; 'xiaoyun=baker' in the env); unmapped Aliyun names "
                      "use the default voice."),
    )
    dashscope_voices: Mapping[str, str] = field(
        default_factory=_no_mapping,
        metadata=_doc("DashScope CosyVoice voice names mapped to ours for /api-ws/v1/inference "
                      "({longxiaochun: baker}); unmapped DashScope names use the default voice."),
    )
    cosyvoice_speakers: Mapping[str, str] = field(
        default_factory=_no_mapping,
        metadata=_doc("CosyVoice speaker ids (spk_id, such as 中文女) mapped to our voices for "
                      "the CosyVoice routes (/inference_*, POST /tts); unmapped ids use the "
                      "default voice."),
    )
    cosyvoice_rate: int = field(
        default=22050,
        metadata=_doc("Sample rate of the raw 16-bit PCM the CosyVoice routes (/inference_*) "
                      "answer: 22050, as CosyVoice-300M's client assumes; 24000 for CosyVoice2 "
                      "(8000, 16000, 22050 or 24000)."),
    )
    admin_token: str | None = field(
        default=None,
        metadata=_doc("Bootstrap admin key: a bearer token with the `admin` scope, beside the "
                      "keys `huiyin keys create` makes. Unset, only those keys reach /admin."),
    )
    access: str | None = field(
        default=None,
        metadata=_doc("Who may make the gateway speak: `open` (anyone who reaches it) or `keys` "
                      "(an API key or a signed URL). Unset is `open` on a loopback host and "
                      "`keys` on any other address."),
    )
    public_phrases: bool = field(
        default=True,
        metadata=_doc("With access `keys`, named phrases (/phrases/…) and stored prompts "
                      "(/prompts/…) stay readable without a key, as IVR platforms fetch them."),
    )
    url_signing_secret: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Secrets of signed URLs (`exp` and `sig`), at least 16 characters each: "
                      "URLs are signed with the first and accepted with any, so a new secret "
                      "goes first and the old one stays listed until its URLs expire "
                      "(comma-separated in the env)."),
    )
    url_signing_bucket: int = field(
        default=3600,
        metadata=_doc("Seconds of the time buckets signed URLs expire on: a URL signed at any "
                      "moment of one bucket gets the same `exp`, so it is the same URL and a "
                      "PBX that caches by URL (Asterisk) hits its cache. A signature stays "
                      "valid for its ttl and less than two buckets more (1: its ttl, to the second)."),
    )
    rate_limit_misses: int = field(
        default=300,
        metadata=_doc("Misses (requests that synthesize) each client may make per minute: each "
                      "API key, or each address under access `open` and for signed URLs (0: "
                      "no limit). A key's own `--rate` overrides it."),
    )
    rate_limit_burst: int = field(
        default=20,
        metadata=_doc("Misses a client may make at once before the per-minute rate applies, "
                      "at most a minute's rate (keep it below queue_size: one client cannot "
                      "fill the queue)."),
    )
    rate_limit_characters: int = field(
        default=20000,
        metadata=_doc("Characters each client may have synthesized per minute (0: no limit)."),
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Addresses or networks (10.0.0.0/8) of reverse proxies in front of the "
                      "gateway: from them, the client's address for per-address rate limits is "
                      "taken from X-Forwarded-For (comma-separated in the env)."),
    )
    cors_origins: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Origins (https://app.example.com) whose pages may call the API from a "
                      "browser; empty sends no CORS headers."),
    )
    phrases: tuple[Path, ...] = field(
        default=(), metadata=_doc("Phrase YAML files to pre-warm (comma-separated in the env).")
    )
    log_level: str = field(default="info", metadata=_doc("Log level: debug, info, warning, error."))

    backends: tuple[Backend, ...] = field(
        default=(),
        metadata=_doc("Remote backends, each an engine with its own voices: a list of entries "
                      "(see Backends below; a JSON list in the environment)."),
    )

    def __post_init__(self) -> None:
        # Stored read-only whatever form it came in: Settings may also be built directly,
        # with the environment's 'name=value,...' text.
        for name in ("openai_voices", "aliyun_voices", "dashscope_voices", "cosyvoice_speakers"):
            object.__setattr__(self, name, mapping_setting(name, getattr(self, name), "Settings"))

    def resolved_access(self) -> str:
        """`open` or `keys`: the setting, or what the listening address implies."""
        if self.access is not None:
            return self.access
        return "open" if is_loopback(self.host) else "keys"

    def resolved_threads(self) -> int:
        """The intra-op thread count to use: the setting, or every core this process may run
        on when it is 0 (its CPU affinity, which a container's cpuset narrows)."""
        if self.threads > 0:
            return self.threads
        affinity = getattr(os, "sched_getaffinity", None)
        return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The settings' dataclass fields, in declaration order (for docs and validation)."""
    return dataclasses.fields(Settings)


def mapping_setting(name: str, raw: object, source: str) -> Mapping[str, str]:
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
