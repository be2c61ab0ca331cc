"""The ModelScope pipeline behind the Engine protocol: sentences in, PCM out.

The pipeline has no speed or pitch option (it takes the text and `voice=` only), so both are
fixed at 1.0 and `setting_ranges` says so; volume is a gain on the decoded samples.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import re
from collections.abc import Iterator, Mapping
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
from synth.sambert.config import SAMBERT_PIPELINE, EngineUnavailableError, read_model_config
from synth.sambert.fingerprint import library_versions, model_fingerprint
from synth.sambert.offline import NAME, go_offline, resolve_model_id, unavailable_packages

# Bump when this module changes the audio it makes from the same model files.
ENGINE_REVISION = "1"
# Imported by ModelScope's Sambert model and voice modules; kantts and ttsfrd are not on PyPI.
SAMBERT_MODULES = ("kantts", "ttsfrd", "matplotlib")
RANGES: Mapping[str, SettingRange] = {
    "speed": SettingRange(1.0, 1.0, 1.0),
    "pitch": SettingRange(1.0, 1.0, 1.0),
    "volume": SettingRange(0.25, 2.0, 1.0),
}
# Said once at startup: loads the first voice's weights and shows the rate the model writes.
WARMUP_TEXT = "您好。"
_ENDS = re.escape(SENTENCE_END)
# The same sentence boundaries as split_sentences, but keeping the punctuation, which
# Sambert's own frontend reads.
_SENTENCE = re.compile(rf"[^{_ENDS}]+[{_ENDS}]*")
# Text never carries markup of its own.
_MARKUP = re.compile(r"[<>]")
# Spoken forms remembered (each about as long as its text).
SPOKEN_FORMS_KEPT = 4096

log = logging.getLogger("huiyin.sambert")


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
        libraries = hashlib.sha256(library_versions().encode()).hexdigest()[:8]
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
        go_offline()
        try:
            import torch
            from modelscope.outputs import OutputKeys
            from modelscope.pipelines import pipeline
            from modelscope.utils.constant import Tasks
        except ImportError as exc:
            raise unavailable_packages(exc) from None
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
