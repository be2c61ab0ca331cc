"""Optional engine: ModelScope text-to-speech models (Sambert-HifiGAN) through ModelScope's own
`pipeline(Tasks.text_to_speech, model=<local folder>)`.

Nothing here touches the network. ModelScope 1.40.2 has no offline switch of its own, so the
engine only ever hands it an absolute local folder (which it reads without asking the hub) and
resolves a model id in the local ModelScope cache only (`local_files_only`). MODELSCOPE_OFFLINE
and HF_HUB_OFFLINE are set to 1 before modelscope is imported, for the libraries that read them.

What the engine reads from the model folder:

- `configuration.json` (required): `task` must be `text-to-speech`; `pipeline.type` and
  `model.type` name the registered pipeline and model; `model.sample_rate`, when present, is
  the rate the model declares (checked against the audio it makes at startup);
  `model.lang_type` (PinYin, ZhHK, EnUS ...) gives the voices' language.
- speakers: `voices/voices.json`, `{"voices": [...]}`, ModelScope's Sambert layout (each listed
  speaker has its folder `voices/<name>/`); without that file, `model.voices` (or `model.voice`)
  in `configuration.json`. The voices keep the model's own speaker names (`zhitian_emo` ...).
- emotions: an `emotions` key in `voices/voices.json`, else `model.emotions` (or
  `model.emotion`) in `configuration.json`: a list shared by every speaker, or a mapping from
  speaker to list. They become the voice's styles after `neutral`, which is always first and
  means plain text. Any other style is sent as `<speak><emotion category="…" intensity="1.0">`
  markup, the form ModelScope's emotional Sambert models take.

The pipeline has no speed or pitch option (it takes the text and `voice=` only), so both are
fixed at 1.0 and `setting_ranges` says so; volume is a gain on the decoded samples.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
import soundfile as sf

from synth.engine import (
    SENTENCE_PAUSE,
    InvalidInputError,
    Pcm,
    Prosody,
    SettingRange,
    SynthesisError,
    VoiceInfo,
    check_request,
)
from synth.frontend import FRONTEND_VERSION, TextNormalizer
from synth.frontend.split import SENTENCE_END
from synth.memo import Memo

NAME = "sambert"
# Bump when this module changes the audio it makes from the same model files.
ENGINE_REVISION = "1"
INSTALL_HINT = "pip install '.[modelscope]'"
TASK = "text-to-speech"
# ModelScope's own Sambert-HifiGAN pipeline type
# (modelscope.metainfo.Pipelines.sambert_hifigan_tts).
SAMBERT_PIPELINE = "sambert-hifigan-tts"
# Imported by ModelScope's Sambert model and voice modules; kantts and ttsfrd are not on PyPI.
SAMBERT_MODULES = ("kantts", "ttsfrd", "matplotlib")
# Their installed versions go into the engine version: they shape the audio too.
LIBRARIES = ("modelscope", "torch", "kantts", "ttsfrd")
RANGES: Mapping[str, SettingRange] = {
    "speed": SettingRange(1.0, 1.0, 1.0),
    "pitch": SettingRange(1.0, 1.0, 1.0),
    "volume": SettingRange(0.25, 2.0, 1.0),
}
# Said once at startup: loads the first voice's weights and shows the rate the model writes.
WARMUP_TEXT = "您好。"
# Files up to this size are hashed by content; larger ones (weights) by name, size and mtime.
SMALL_FILE = 1 << 20
LANGUAGES = {"PinYin": "zh-CN", "ZhHK": "zh-HK", "EnUS": "en-US", "EnGB": "en-GB"}
_STYLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_MODEL_ID = re.compile(r"\w[\w.-]*/\w[\w.-]*")
_ENDS = re.escape(SENTENCE_END)
# The same sentence boundaries as split_sentences, but keeping the punctuation, which
# Sambert's own frontend reads.
_SENTENCE = re.compile(rf"[^{_ENDS}]+[{_ENDS}]*")
# Text never carries markup of its own.
_MARKUP = re.compile(r"[<>]")
# Spoken forms remembered (each about as long as its text).
SPOKEN_FORMS_KEPT = 4096

log = logging.getLogger("huiyin.sambert")


class EngineUnavailableError(SynthesisError):
    """The engine cannot load: a package or a model file is missing; the message says what to do."""


@dataclass(frozen=True)
class ModelConfig:
    """What the engine needs from a model folder, read and checked without loading anything."""

    directory: Path
    pipeline_type: str
    model_type: str
    declared_rate: int | None
    language: str
    speakers: tuple[str, ...]
    emotions: Mapping[str, tuple[str, ...]]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineUnavailableError(f"{path}: cannot read it: {exc}") from None
    except ValueError as exc:
        raise EngineUnavailableError(f"{path}: not valid JSON: {exc}") from None


def _names(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise EngineUnavailableError(f"{where} must be a name or a list of names, got {raw!r}")
    names = tuple(i.strip() for i in items)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EngineUnavailableError(f"{where} lists '{duplicates[0]}' twice")
    return names


def _emotions(raw: Any, speakers: tuple[str, ...], where: str) -> dict[str, tuple[str, ...]]:
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - set(speakers))
        if unknown:
            raise EngineUnavailableError(f"{where} names '{unknown[0]}', which is not a speaker")
        per_voice = {s: _names(raw.get(s), f"{where}['{s}']") for s in speakers}
    else:
        shared = _names(raw, where)
        per_voice = {s: shared for s in speakers}
    for names in per_voice.values():
        bad = [n for n in names if not _STYLE_NAME.fullmatch(n)]
        if bad:
            raise EngineUnavailableError(f"{where}: '{bad[0]}' is not a valid emotion name")
    return per_voice


def _missing_sambert_files(directory: Path, speakers: tuple[str, ...]) -> list[str]:
    """The files ModelScope's Sambert-HifiGAN model reads that are absent (relative names)."""
    missing = [] if (directory / "resource.zip").is_file() else ["resource.zip"]
    for speaker in speakers:
        base = directory / "voices" / speaker
        for part in ("am", "voc"):
            if not (base / part / "config.yaml").is_file():
                missing.append(f"voices/{speaker}/{part}/config.yaml")
            ckpt = base / part / "ckpt"
            if not (ckpt.is_dir() and any(ckpt.glob("checkpoint_*.pth"))):
                missing.append(f"voices/{speaker}/{part}/ckpt/checkpoint_*.pth")
    return missing


def read_model_config(directory: Path) -> ModelConfig:
    """Read and check a model folder's configuration; every problem names the file or field."""
    if not directory.is_dir():
        raise EngineUnavailableError(
            f"the ModelScope model folder {directory} does not exist; put the model there "
            "(a folder with configuration.json, as ModelScope downloads it) or fix the "
            "'sambert_model_dir' setting"
        )
    config_path = directory / "configuration.json"
    if not config_path.is_file():
        raise EngineUnavailableError(
            f"{directory} has no configuration.json: it is not a ModelScope model folder; "
            "copy the whole model folder there, configuration.json included"
        )
    config = _read_json(config_path)
    if not isinstance(config, dict):
        raise EngineUnavailableError(f"{config_path}: must be a JSON object")
    if config.get("task") != TASK:
        raise EngineUnavailableError(
            f"{config_path}: 'task' is {config.get('task')!r}, not '{TASK}': not a speech model"
        )
    types: dict[str, str] = {}
    for section in ("pipeline", "model"):
        value = config.get(section)
        kind = value.get("type") if isinstance(value, dict) else None
        if not isinstance(kind, str) or not kind:
            raise EngineUnavailableError(f"{config_path}: '{section}.type' is missing")
        types[section] = kind
    model: dict[str, Any] = config["model"]
    rate = model.get("sample_rate")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0):
        raise EngineUnavailableError(
            f"{config_path}: 'model.sample_rate' must be a positive integer"
        )

    listing_path = directory / "voices" / "voices.json"
    listing: dict[str, Any] = {}
    if listing_path.is_file():
        raw_listing = _read_json(listing_path)
        if not isinstance(raw_listing, dict):
            raise EngineUnavailableError(f"{listing_path}: must be a JSON object")
        listing = raw_listing
        speakers = _names(listing.get("voices"), f"{listing_path}: 'voices'")
        absent = [s for s in speakers if not (directory / "voices" / s).is_dir()]
        if absent:
            raise EngineUnavailableError(
                f"{listing_path} lists speaker '{absent[0]}' but its folder "
                f"voices/{absent[0]}/ is missing in {directory}"
            )
    else:
        speakers = _names(model.get("voices", model.get("voice")), f"{config_path}: 'model.voices'")
    if not speakers:
        raise EngineUnavailableError(
            f"{directory}: no speakers listed; expected voices/voices.json with "
            '{"voices": [...]} (ModelScope\'s Sambert layout) or \'model.voices\' in '
            "configuration.json"
        )
    if listing.get("emotions") is not None:
        emotions = _emotions(listing["emotions"], speakers, f"{listing_path}: 'emotions'")
    else:
        emotions = _emotions(
            model.get("emotions", model.get("emotion")), speakers,
            f"{config_path}: 'model.emotions'",
        )

    if types["pipeline"] == SAMBERT_PIPELINE:
        missing = _missing_sambert_files(directory, speakers)
        if missing:
            raise EngineUnavailableError(
                f"the Sambert-HifiGAN model in {directory} is incomplete; missing: "
                f"{', '.join(missing)}; copy the complete model folder there"
            )
    language = LANGUAGES.get(str(model.get("lang_type", "PinYin")), "zh-CN")
    return ModelConfig(
        directory, types["pipeline"], types["model"], rate, language, speakers, emotions
    )


def _model_files(directory: Path) -> Iterator[Path]:
    """Every file that makes the model: hidden files (hub bookkeeping) and a folder unpacked
    from a zip beside it (ModelScope's Sambert unpacks resource.zip at each load) are left out."""
    for root, dirs, files in os.walk(directory, followlinks=True):
        here = Path(root)
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and d != "__pycache__" and not (here / f"{d}.zip").is_file()
        )
        for name in sorted(files):
            if not name.startswith("."):
                yield here / name


def model_fingerprint(directory: Path) -> str:
    """Hash of the model files: small files (configuration.json, voices.json, the YAML configs)
    by content, larger ones (weights) by relative name, size and modification time."""
    digest = hashlib.sha256()
    for path in _model_files(directory):
        stat = path.stat()
        rel = path.relative_to(directory).as_posix()
        if stat.st_size <= SMALL_FILE:
            entry = f"{rel}\0content\0{hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            entry = f"{rel}\0stat\0{stat.st_size}\0{stat.st_mtime_ns}"
        digest.update(entry.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _library_versions() -> str:
    found = []
    for dist in LIBRARIES:
        try:
            found.append(f"{dist}={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{dist}=none")
    return ",".join(found)


def _go_offline() -> None:
    # Set before modelscope (and through it transformers / huggingface_hub) is imported.
    os.environ["MODELSCOPE_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # modelscope reads its log level once, as a number, and resets its logger to it on every
    # get_logger(); at INFO/WARNING it reports registry-index misses and absent preprocessors
    # on each load of a local model. Real failures raise.
    os.environ.setdefault("MODELSCOPE_LOG_LEVEL", str(logging.ERROR))


def _unavailable_packages(exc: BaseException) -> EngineUnavailableError:
    return EngineUnavailableError(
        f"the '{NAME}' engine needs the ModelScope packages, which are not installed or do not "
        f"import: install them with {INSTALL_HINT} ({type(exc).__name__}: {exc})"
    )


def resolve_model_id(model_id: str) -> Path:
    """The folder of `model_id` in the local ModelScope cache (MODELSCOPE_CACHE, else
    ModelScope's default), found the way ModelScope looks (its current and older layouts,
    `hub/` included) without any network call."""
    if not _MODEL_ID.fullmatch(model_id):
        raise EngineUnavailableError(
            f"setting 'sambert_model_id': '{model_id}' is not a ModelScope model id (owner/name)"
        )
    _go_offline()
    try:
        from modelscope.hub.snapshot_download import snapshot_download
        from modelscope_hub.errors import HubError
    except ImportError as exc:
        raise _unavailable_packages(exc) from None
    # It logs each hit in an older cache layout at INFO (and reads MODELSCOPE_LOG_LEVEL as a
    # level name, unlike modelscope).
    logging.getLogger("modelscope_hub").setLevel(logging.WARNING)
    cache = os.environ.get("MODELSCOPE_CACHE") or None
    try:
        found = snapshot_download(model_id, cache_dir=cache, local_files_only=True)
    except (HubError, OSError, ValueError) as exc:
        where = cache or "ModelScope's default cache (~/.cache/modelscope)"
        raise EngineUnavailableError(
            f"ModelScope model '{model_id}' is not in the local ModelScope cache {where}: {exc}. "
            f"Fetch it where the hub is reachable (`modelscope download {model_id}`), copy the "
            "cache folder here and set MODELSCOPE_CACHE to it, or set 'sambert_model_dir' to a "
            "folder holding the model"
        ) from None
    return Path(found).resolve()


class SambertEngine:
    """A ModelScope text-to-speech model behind the Engine protocol; loads once, at construction."""

    name = NAME

    def __init__(self, model_dir: Path, *, threads: int = 0) -> None:
        directory = Path(model_dir).expanduser().resolve()
        self._config = read_model_config(directory)
        if self._config.pipeline_type == SAMBERT_PIPELINE:
            absent = [m for m in SAMBERT_MODULES if importlib.util.find_spec(m) is None]
            if absent:
                raise EngineUnavailableError(
                    f"ModelScope's Sambert-HifiGAN pipeline needs the Python packages "
                    f"{', '.join(absent)}, which are not installed. kantts and ttsfrd are the "
                    "Sambert frontend: PyPI holds only placeholders, so install them from the "
                    "vendor's own distribution as the model's page instructs; matplotlib comes "
                    "from PyPI (see docs/voices.md, 'The ModelScope engine')"
                )
        # Hashed before loading: ModelScope's Sambert unpacks resource.zip into the folder.
        fingerprint = model_fingerprint(directory)
        libraries = hashlib.sha256(_library_versions().encode()).hexdigest()[:8]
        self._version = (
            f"ms{fingerprint[:12]}.e{ENGINE_REVISION}.fe{FRONTEND_VERSION}.lib{libraries}"
        )
        self._pipeline, self._wav_key = self._load(directory, threads)
        self._normalizer = TextNormalizer()
        self._spoken_forms = Memo(self._spoken_form, SPOKEN_FORMS_KEPT)
        self._voices = tuple(
            VoiceInfo(
                name=speaker,
                language=self._config.language,
                styles=("neutral", *(e for e in self._config.emotions[speaker] if e != "neutral")),
                description=f"ModelScope {self._config.model_type} speaker '{speaker}' "
                            f"({directory.name}); styles are the model's own emotions",
            )
            for speaker in self._config.speakers
        )
        self._sample_rate = self._warm_up()
        log.info("sambert: loaded %s (%s), voices %s, %d Hz", directory,
                 self._config.pipeline_type, ", ".join(self._config.speakers), self._sample_rate)

    @classmethod
    def from_cache(cls, model_id: str, *, threads: int = 0) -> SambertEngine:
        """Load `model_id` from the local ModelScope cache (see resolve_model_id)."""
        return cls(resolve_model_id(model_id), threads=threads)

    def _load(self, directory: Path, threads: int) -> tuple[Any, str]:
        _go_offline()
        try:
            import torch
            from modelscope.outputs import OutputKeys
            from modelscope.pipelines import pipeline
            from modelscope.utils.constant import Tasks
        except ImportError as exc:
            raise _unavailable_packages(exc) from None
        if threads > 0:
            # Process-wide in torch: every instance is built with the same per-worker count.
            torch.set_num_threads(threads)
        try:
            built = pipeline(Tasks.text_to_speech, model=str(directory), device="cpu")
        except Exception as exc:  # anything the model's own loader raises
            raise EngineUnavailableError(
                f"ModelScope could not build the text-to-speech pipeline from {directory} "
                f"(pipeline '{self._config.pipeline_type}', model '{self._config.model_type}'): "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return built, str(OutputKeys.OUTPUT_WAV)

    def _warm_up(self) -> int:
        try:
            _, rate = self._call(WARMUP_TEXT, self._config.speakers[0])
        except SynthesisError as exc:
            raise EngineUnavailableError(f"the model in {self._config.directory} failed its first "
                                         f"synthesis: {exc}") from None
        declared = self._config.declared_rate
        if declared is not None and declared != rate:
            raise EngineUnavailableError(
                f"{self._config.directory / 'configuration.json'} declares sample_rate {declared} "
                f"but the model writes {rate} Hz audio"
            )
        return rate

    @property
    def version(self) -> str:
        """Model files, engine and frontend revisions, library versions: any change alters it."""
        return self._version

    @property
    def sample_rate(self) -> int:
        """The rate the model writes (read from its audio at startup)."""
        return self._sample_rate

    @property
    def model_dir(self) -> Path:
        """The model folder in use."""
        return self._config.directory

    def voices(self) -> tuple[VoiceInfo, ...]:
        """One voice per speaker of the model, named as the model names it."""
        return self._voices

    def setting_ranges(self) -> Mapping[str, SettingRange]:
        """Volume only: the pipeline offers no speed or pitch control."""
        return RANGES

    def _check(self, voice: str | None, style: str, prosody: Prosody) -> VoiceInfo:
        info = check_request(self, voice, style, prosody)
        if prosody.intonation != 1.0:
            raise InvalidInputError("intonation", "this engine has no intonation control")
        return info

    def spoken_form(self, text: str) -> str:
        """Exactly what the pipeline is asked to say: the normalized sentences, punctuation
        kept (the model's own frontend reads it), one per line.

        Equal forms give the same audio under equal settings and engine version. Memoized;
        safe to call while another thread synthesizes.
        """
        return self._spoken_forms(text)

    def _spoken_form(self, text: str) -> str:
        # Sentences are stripped and split at newlines, so a newline cannot occur inside one.
        sentences = self._sentences(text)
        if not sentences:
            raise InvalidInputError("text", "the text has nothing to say")
        return "\n".join(sentences)

    def _sentences(self, text: str) -> list[str]:
        normalized = _MARKUP.sub(" ", self._normalizer.normalize(text))
        pieces = (p.strip() for p in _SENTENCE.findall(normalized))
        return [p for p in pieces if any(ch.isalnum() for ch in p)]

    def _call(self, text: str, voice: str) -> tuple[npt.NDArray[np.int16], int]:
        try:
            result = self._pipeline(text, voice=voice)
            wav = result[self._wav_key]
        except Exception as exc:  # the model's own errors, whatever their type
            raise SynthesisError(
                f"the ModelScope pipeline failed for voice '{voice}': {type(exc).__name__}: {exc}"
            ) from exc
        try:
            audio, rate = sf.read(io.BytesIO(wav), dtype="int16", always_2d=True)
        except (TypeError, RuntimeError, sf.LibsndfileError) as exc:
            raise SynthesisError(
                f"the ModelScope pipeline's output is not WAV audio: {exc}"
            ) from exc
        if audio.shape[1] == 1:
            mono: npt.NDArray[np.int16] = audio[:, 0].copy()
        else:
            mono = audio.mean(axis=1).round().astype(np.int16)
        return mono, int(rate)

    def _speak(self, sentence: str, voice: str, style: str, volume: float) -> npt.NDArray[np.int16]:
        if style != "neutral":
            sentence = (f'<speak><emotion category="{style}" intensity="1.0">'
                        f"{escape(sentence)}</emotion></speak>")
        samples, rate = self._call(sentence, voice)
        if rate != self._sample_rate:
            raise SynthesisError(
                f"the model wrote {rate} Hz audio for voice '{voice}'; this engine runs at "
                f"{self._sample_rate} Hz"
            )
        if volume != 1.0:
            scaled = np.rint(samples.astype(np.float32) * np.float32(volume))
            samples = np.clip(scaled, -32768, 32767).astype(np.int16)
        return samples

    def stream(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Iterator[Pcm]:
        """Yield each sentence as soon as the pipeline has said it; a pause follows all but
        the last."""
        info = self._check(voice, style, prosody)
        sentences = self._sentences(text)
        if not sentences:
            raise InvalidInputError("text", "the text has nothing to say")
        pause = np.zeros(int(SENTENCE_PAUSE * self._sample_rate), dtype=np.int16)
        last = len(sentences) - 1
        for i, sentence in enumerate(sentences):
            samples = self._speak(sentence, info.name, style, prosody.volume)
            if i < last:
                samples = np.concatenate([samples, pause])
            yield Pcm(samples, self._sample_rate)

    def synthesize(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Pcm:
        """The whole text as one PCM buffer: exactly the concatenation of `stream`."""
        return Pcm.concat(list(self.stream(text, voice=voice, style=style, prosody=prosody)))
