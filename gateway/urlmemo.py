"""The URL memo: exact /tts URLs already answered, where their audio lives, and the
response headers built for that audio, for the /tts handler.

It never holds audio. The bytes always come from the store's hot set, whose byte budget
bounds them; a URL whose audio has left the hot set costs only its key here.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from aiohttp import web
from multidict import CIMultiDict

from cache.store import Audio
from gateway.caching import PUBLIC, Caching
from gateway.responses import audio_headers

# Exact URLs remembered; a URL costs a few hundred bytes here.
URLS = 20_000
# Prebuilt header sets kept, one per distinct audio; only audio in the hot set uses them.
HEADER_SETS = 4096


class HotAudio(Protocol):
    """Where the memo finds audio: the store's hot set, and nothing slower."""

    @property
    def reading_epoch(self) -> int:
        """Changes when texts may read differently (a site lexicon change): the URLs
        remembered before may name other audio now."""
        ...

    def hot_hit(self, key: str, fmt: str, rate: int) -> Audio | None:
        """Encoded audio from memory (counted as a hit), or None."""
        ...


class Place(NamedTuple):
    """Where a URL's audio lives in the store."""

    key: str
    format: str
    rate: int


class Hit(NamedTuple):
    """A remembered URL whose audio is in memory, with the headers built for it."""

    audio: Audio
    headers: CIMultiDict[str]


class UrlMemo:
    """Exact /tts URLs (path and query as sent) already answered: a repeated URL skips
    parsing, normalization and checks and goes straight to the hot set. Bounded, oldest
    out first; forgotten whole when texts may read differently (the store's reading
    epoch moves: a lexicon change here or on another replica), and URL by URL when their
    prompts are purged (the store tells `forget`). A no-store request's URL is never
    remembered."""

    def __init__(self, cache_control: str, size: int = URLS, header_sets: int = HEADER_SETS) -> None:
        self.cache_control = cache_control
        self._size = size
        self._header_sets = header_sets
        self._places: dict[str, Place] = {}
        self._epoch = 0
        # By ETag, which names the bytes (new audio for a key gets new headers), and how the
        # answer may be cached (gateway.caching.Caching: private, or a signed URL's max-age).
        self._prebuilt: dict[tuple[str, tuple[bool, int | None]], CIMultiDict[str]] = {}

    def __len__(self) -> int:
        return len(self._places)

    def _follow(self, hot: HotAudio) -> None:
        if hot.reading_epoch != self._epoch:
            self._places.clear()
            self._epoch = hot.reading_epoch

    def forget(self, keys: set[str]) -> None:
        """Forget the URLs whose audio is one of these prompts (purged, expired or made
        again): their URLs carry their texts."""
        for target in [t for t, place in self._places.items() if place.key in keys]:
            del self._places[target]

    def remember(self, target: str, audio: Audio, hot: HotAudio, epoch: int) -> None:
        """Remember where a URL's answer lives (not a fallback's: the URL's own voice is
        asked again next time), unless texts read differently since its key was found
        (`epoch`: the store's reading epoch when it was asked)."""
        self._follow(hot)
        if audio.fallback is not None or epoch != self._epoch:
            return
        if target not in self._places and len(self._places) >= self._size:
            del self._places[next(iter(self._places))]
        self._places[target] = Place(audio.key, audio.format, audio.rate)

    def find(self, target: str, hot: HotAudio, caching: Caching = PUBLIC) -> Hit | None:
        """The audio and headers of a URL answered before, if its audio is in memory, with
        the Cache-Control `caching` allows."""
        self._follow(hot)
        place = self._places.get(target)
        if place is None:
            return None
        audio = hot.hot_hit(place.key, place.format, place.rate)
        if audio is None:
            return None
        caching = caching.until(audio.expires)
        restriction = caching.key()
        headers = self._prebuilt.get((audio.etag, restriction))
        if headers is None:
            if len(self._prebuilt) >= self._header_sets:
                del self._prebuilt[next(iter(self._prebuilt))]
            headers = audio_headers(audio, caching.apply(self.cache_control))
            self._prebuilt[(audio.etag, restriction)] = headers
        return Hit(audio, headers)


URL_MEMO = web.AppKey("url_memo", UrlMemo)
