"""The default voice: Mandarin FastSpeech2 + Multi-band MelGAN (Baker corpus) on ONNX Runtime."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

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
from synth.frontend import FRONTEND_VERSION, Frontend, Lexicon, SymbolTable, load_lexicon, parse_lexicon
from synth.frontend.frontend import Piece
from synth.memo import CacheInfo, Memo
from synth.models import PreparedModel, find_prepared
from synth.onnx import cpu_session, optimized_session
from synth.runtimes import runtime_tag
from synth.styles import PRESETS, apply_style

SAMPLE_RATE = 24000
# Bump when this module changes the audio it makes from the same model and frontend.
ENGINE_REVISION = "1"
VOICE = VoiceInfo(
    name="baker",
    language="zh-CN",
    styles=tuple(PRESETS),
    description="Mandarin female voice (Baker corpus); styles are prosody presets",
)
RANGES: Mapping[str, SettingRange] = {
    "speed": SettingRange(0.5, 2.0, 1.0),
    "pitch": SettingRange(0.7, 1.4, 1.0),
    "volume": SettingRange(0.25, 2.0, 1.0),
}
# MB-MelGAN's receptive field is within 24 mel frames each way, so a chunk vocoded with
# this much context on both sides reproduces the single-run samples exactly (16 do not;
# a test checks the equality).
VOCODER_CONTEXT = 24
# Below this many frames per chunk, splitting costs more than it saves.
VOCODER_MIN_CHUNK = 96
# At most this many frames per vocoder run. A run holds about 0.16 MB per frame (with its
# context) in ONNX Runtime's arena, which keeps its largest size: a 600-frame sentence
# would keep 100 MB per run at once for good. Each cut costs 2 * VOCODER_CONTEXT frames
# more work, 16% of a 600-frame sentence at 200 (320 kept 23 MB more at the peak of a
# flood of misses; giving the arena back after long runs instead kept more, not less).
VOCODER_MAX_CHUNK = 200
HOP = 300  # samples per mel frame
# Frames (0.4 s) of the first model call's audio vocoded alone, so a stream starts early;
# the rest (at least VOCODER_MIN_CHUNK frames more) is ready long before they have played.
HEAD_FRAMES = 32
# Spoken forms remembered: a few hundred bytes each for a typical prompt.
SPOKEN_FORMS_KEPT = 4096


class ModelNotPreparedError(SynthesisError):
    """The default voice's files are missing; `huiyin models prepare` makes them."""




def voice_syllables(models_dir: Path) -> set[str]:
    """The syllables the prepared voice can say (for checking lexicon words without loading
    the models)."""
    model = find_prepared(models_dir)
    if model is None:
        raise ModelNotPreparedError(f"the default voice is not prepared in {models_dir}; "
                                    "run `huiyin models prepare`")
    return set(_symbol_table(model).syllables)


def _symbol_table(model: PreparedModel) -> SymbolTable:
    """The prepared voice's symbols (its mapper file)."""
    return SymbolTable.from_mapper(json.loads(model.path("baker_mapper.json").read_text("utf-8")))


class FastSpeech2Engine:
    """FastSpeech2 acoustic model and MB-MelGAN vocoder; sessions load once."""

    name = "fastspeech2"
    sample_rate = SAMPLE_RATE
    # A text may come as pieces (an SSML segment), with readings given by syllable.
    reads_pieces = True
    # ONNX Runtime sessions run concurrent calls; the frontend holds its own lock, and the
    # vocoder's chunk pool is shared. So one instance (one copy in memory) serves every
    # lane of its worker.
    concurrent_calls = True

    def __init__(
        self, model: PreparedModel, *, threads: int = 1, lexicon: Path | None = None
    ) -> None:
        symbols = _symbol_table(model)
        self._symbols = symbols
        self._syllables = set(symbols.syllables)
        # The sessions are built in native code, beside the frontend's loading: a quicker
        # cold start. The vocoder barely gains from intra-op threads; it runs chunks side by
        # side instead.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="engine-load") as loader:
            # From the file optimized for this machine (its convolutions' weights are float).
            acoustic = loader.submit(optimized_session, model.path("fastspeech2.onnx"), threads)
            vocoder = loader.submit(cpu_session, model.path("mb_melgan.onnx"), 1)
            self._frontend = Frontend(
                symbols, load_lexicon(lexicon, self._syllables), cache_dir=model.directory.parent
            )
            self._acoustic, self._vocoder = acoustic.result(), vocoder.result()
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vocoder")
        # Calls running now: the vocoder's chunks share the cores among them.
        self._calls = 0
        self._calls_lock = threading.Lock()
        # Graph simplification may drop inputs that are constant for one speaker.
        self._acoustic_inputs = {i.name for i in self._acoustic.get_inputs()}
        # The lexicon is not part of the version: a key hashes the symbol ids the lexicon
        # leads to, so a lexicon edit re-keys exactly the prompts whose reading it changes.
        self._version = f"{model.recipe}.e{ENGINE_REVISION}.fe{FRONTEND_VERSION}.{runtime_tag()}"
        self._spoken_forms = Memo(self._spoken_form, SPOKEN_FORMS_KEPT)

    @classmethod
    def load(
        cls, models_dir: Path, *, threads: int = 1, lexicon: Path | None = None
    ) -> FastSpeech2Engine:
        """Load the prepared voice from models_dir, or say how to prepare it."""
        model = find_prepared(models_dir)
        if model is None:
            raise ModelNotPreparedError(
                f"the default voice is not prepared in {models_dir}; "
                "run `huiyin models prepare` (or `make run`, which does it)"
            )
        return cls(model, threads=threads, lexicon=lexicon)

    @property
    def version(self) -> str:
        """Model recipe, engine and frontend revisions, ONNX Runtime and numpy versions.

        The lexicon shows in each spoken form instead.
        """
        return self._version

    @property
    def frontend(self) -> Frontend:
        """The text frontend this engine reads with."""
        return self._frontend

    def spoken_form(self, text: str | Sequence[Piece]) -> str:
        """Exactly what the voice is asked to say: each sentence's symbol ids in decimal,
        space-separated, sentences joined by '|' (as in "1 18 119 1 218|1 9 29 1 218").

        Equal forms give sample-identical audio under equal settings and engine version.
        Memoized; safe to call while another thread synthesizes.
        """
        return self._spoken_forms(text if isinstance(text, str) else self._checked(text))

    def _checked(self, pieces: Sequence[Piece]) -> tuple[Piece, ...]:
        """Pieces whose given syllables this voice can say (else InvalidInputError)."""
        for piece in pieces:
            bad = next((s for s in piece.syllables if self._symbols.phones(s) is None), None)
            if bad is not None:
                raise InvalidInputError(
                    "text", f"SSML: '{bad}' (for '{piece.text[:20]}') is not a syllable "
                            "this voice can say")
        return tuple(pieces)

    def site_lexicon(self, entries: Mapping[str, str]) -> Lexicon:
        """The site's words (word -> 'pin1 yin1') checked against this voice's syllables;
        LexiconError names a bad one."""
        return parse_lexicon((f"{w}\t{p}" for w, p in entries.items()), "site lexicon",
                             self._syllables)

    def set_site_lexicon(self, entries: Mapping[str, str]) -> None:
        """Read with the site's words from now on (see site_lexicon)."""
        self._frontend.set_site_words(self.site_lexicon(entries))
        self._spoken_forms.cache_clear()

    def pronounce(self, text: str | Sequence[Piece]) -> dict[str, Any]:
        """What the voice will say, for a person to read: normalized text, words with
        pinyin and the source of each reading, pauses, and the symbols the model gets
        (synth/frontend/preview.py)."""
        described = self._frontend.pronounce(text if isinstance(text, str) else self._checked(text))
        if not described["sentences"]:
            raise InvalidInputError("text", "the text has nothing to say")
        return described

    def spoken_form_cache_info(self) -> CacheInfo:
        """Hits, misses and size of the remembered spoken forms."""
        return self._spoken_forms.cache_info()

    def _spoken_form(self, text: str | tuple[Piece, ...]) -> str:
        # The ids are all the acoustic model sees of the text, and sentences are synthesized
        # separately with a fixed pause between them: together they decide the audio.
        utterance = self._frontend.analyze(text)
        if not utterance.sentences:
            raise InvalidInputError("text", "the text has nothing to say")
        return "|".join(" ".join(map(str, s.ids)) for s in utterance.sentences)

    def voices(self) -> tuple[VoiceInfo, ...]:
        """The one built-in voice."""
        return (VOICE,)

    def setting_ranges(self) -> Mapping[str, SettingRange]:
        """Accepted speed, pitch and volume."""
        return RANGES

    def _mel(self, ids: tuple[int, ...], prosody: Prosody) -> npt.NDArray[np.float32]:
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int32),
            "speaker_ids": np.zeros(1, dtype=np.int32),
            # The model's speed ratio scales durations (larger is slower). Pitch is shifted
            # by resampling afterwards, which shortens the audio by the same factor, so the
            # durations are stretched by it here first.
            "speed_ratios": np.asarray([prosody.pitch / prosody.speed], dtype=np.float32),
            # The f0 ratio scales the normalized contour: the range of intonation, not its mean.
            "f0_ratios": np.asarray([prosody.intonation], dtype=np.float32),
            "energy_ratios": np.asarray([prosody.volume], dtype=np.float32),
        }
        feeds = {k: v for k, v in feeds.items() if k in self._acoustic_inputs}
        mel: npt.NDArray[np.float32] = self._acoustic.run(None, feeds)[1]
        return mel

    def _vocode_span(self, mel: npt.NDArray[np.float32], start: int, end: int) -> npt.NDArray[np.float32]:
        lo, hi = max(0, start - VOCODER_CONTEXT), min(mel.shape[1], end + VOCODER_CONTEXT)
        out: npt.NDArray[np.float32] = self._vocoder.run(None, {"mels": mel[:, lo:hi]})[0][0, :, 0]
        return out[(start - lo) * HOP : (end - lo) * HOP]

    def _vocode(
        self, mel: npt.NDArray[np.float32], start: int = 0
    ) -> npt.NDArray[np.float32]:
        """Mel frames from `start` on to audio, in overlapping chunks run in parallel.

        Sample-exact: any split gives the samples a single run over the whole mel gives.
        """
        frames = mel.shape[1] - start
        # Alone, a call splits its mel over every core; beside other calls, over its share.
        # Every run goes through the pool, so no more than `threads` runs hold their buffers
        # at once, however many lanes there are; and no run is longer than VOCODER_MAX_CHUNK.
        share = max(1, self._threads // max(1, self._calls))
        parts = max(1, min(share, frames // VOCODER_MIN_CHUNK), -(-frames // VOCODER_MAX_CHUNK))
        bounds = [start + frames * k // parts for k in range(parts + 1)]
        spans = self._pool.map(lambda k: self._vocode_span(mel, bounds[k], bounds[k + 1]), range(parts))
        return np.concatenate(list(spans))

    def _opening(self, mel: npt.NDArray[np.float32], prosody: Prosody, first: bool) -> bool:
        # The first call's opening is vocoded alone so a stream starts early. Pitch shifting
        # resamples whole sentences, so those stay in one piece.
        return first and prosody.pitch == 1.0 and mel.shape[1] >= HEAD_FRAMES + VOCODER_MIN_CHUNK

    def _finish(self, audio: npt.NDArray[np.float32], prosody: Prosody) -> npt.NDArray[np.float32]:
        if prosody.pitch != 1.0:
            # Played back `pitch` times faster: F0 rises by that factor, duration returns.
            audio = soxr.resample(audio, SAMPLE_RATE * prosody.pitch, SAMPLE_RATE, quality="HQ")
        return audio * np.float32(prosody.volume)

    @staticmethod
    def _to_pcm16(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
        return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)

    def stream(
        self, text: str | Sequence[Piece], *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Iterator[Pcm]:
        """Yield PCM as soon as it is synthesized: sentence by sentence (a pause follows all
        but the last), with the first call's opening ahead of its remainder."""
        return self._generate(text, voice, style, prosody, early_opening=True)

    def _generate(
        self, text: str | Sequence[Piece], voice: str | None, style: str, prosody: Prosody, *, early_opening: bool,
    ) -> Iterator[Pcm]:
        # The opening costs a little throughput (it is vocoded alone), so only streams do it;
        # the samples are the same either way.
        check_request(self, voice, style, prosody)
        with self._calls_lock:
            self._calls += 1
        try:
            yield from self._sentences(text, style, prosody, early_opening=early_opening)
        finally:
            with self._calls_lock:
                self._calls -= 1

    def _sentences(
        self, text: str | Sequence[Piece], style: str, prosody: Prosody, *, early_opening: bool,
    ) -> Iterator[Pcm]:
        effective = apply_style(style, prosody)
        utterance = self._frontend.analyze(text if isinstance(text, str) else self._checked(text))
        if not utterance.sentences:
            raise InvalidInputError("text", "the text has nothing to say")
        pause = np.zeros(int(SENTENCE_PAUSE * SAMPLE_RATE), dtype=np.int16)
        last = len(utterance.sentences) - 1
        unread = utterance.unread
        for i, sentence in enumerate(utterance.sentences):
            mel = self._mel(sentence.ids, effective)
            start = 0
            if early_opening and self._opening(mel, effective, first=i == 0):
                head = self._pool.submit(self._vocode_span, mel, 0, HEAD_FRAMES).result()
                yield Pcm(self._to_pcm16(self._finish(head, effective)), SAMPLE_RATE, unread)
                unread, start = (), HEAD_FRAMES
            samples = self._to_pcm16(self._finish(self._vocode(mel, start), effective))
            if i < last:
                samples = np.concatenate([samples, pause])
            yield Pcm(samples, SAMPLE_RATE, unread)
            unread = ()

    def synthesize(
        self, text: str | Sequence[Piece], *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Pcm:
        """The whole text as one PCM buffer: exactly the concatenation of `stream`."""
        return Pcm.concat(list(self._generate(text, voice, style, prosody, early_opening=False)))
