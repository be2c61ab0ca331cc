"""The phrase store: keys, index, files, warm-up, and the one get_or_synthesize."""

from cache.audio import Audio, StoredPhrase
from cache.check import CheckReport
from cache.keys import SpeechRequest, is_key, phrase_key
from cache.maintenance import Stats
from cache.store import PromptStore, SpeechStream, Synthesizer

__all__ = [
    "Audio",
    "CheckReport",
    "PromptStore",
    "SpeechRequest",
    "SpeechStream",
    "Stats",
    "StoredPhrase",
    "Synthesizer",
    "is_key",
    "phrase_key",
]
