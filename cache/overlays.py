"""Each tenant's own lexicon words, kept in the index beside the site's: a tenant's words
are said its way in its own prompts only.

A request is scoped to its tenant before its key is read: it carries the tenant's words
that stand in its text (`SpeechRequest.words`), which the voices say as given (an SSML
phoneme each, synth/ssml/readings.py). So a tenant's word changes the reading, and so the
key, of that tenant's prompts that contain it, and of nobody else's. Its words are matched
in the text as written; they are Chinese words (Latin ones are the site's only).
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from cache.keys import SpeechRequest
from cache.tables import TenantWordRow
from synth.engine import InvalidInputError
from synth.ssml import SsmlError
from synth.ssml.readings import check_reading

_WORDS = cast(Table, TenantWordRow.__table__)
_HAN_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{1,32}")


def tenant_words(engine: Engine) -> dict[str, dict[str, str]]:
    """Every tenant's words and their pinyin, by tenant (blocking)."""
    out: dict[str, dict[str, str]] = {}
    with engine.connect() as connection:
        for row in connection.execute(select(_WORDS).order_by(_WORDS.c.tenant, _WORDS.c.word)):
            out.setdefault(row.tenant, {})[row.word] = row.pinyin
    return out


def check_tenant_word(word: str, pinyin: str) -> None:
    """Refuse a tenant's word that is not Chinese characters, or a reading that is not one
    toned syllable per character (InvalidInputError names the field)."""
    if not _HAN_WORD.fullmatch(word):
        raise InvalidInputError("word", "a tenant's word is 1 to 32 Chinese characters (Latin "
                                        "words are the site's only)")
    try:
        check_reading(word, pinyin)
    except SsmlError as exc:
        raise InvalidInputError("pinyin", str(exc).removeprefix("SSML: ")) from None


def put_tenant_word(engine: Engine, tenant: str, word: str, pinyin: str) -> None:
    """Add or change a tenant's word, once check_tenant_word allows it (blocking)."""
    check_tenant_word(word, pinyin)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_WORDS).values(tenant=tenant, word=word, pinyin=pinyin,
                                              updated=time.time())
    with engine.begin() as connection:
        connection.execute(statement.on_conflict_do_update(
            index_elements=[_WORDS.c.tenant, _WORDS.c.word],
            set_={"pinyin": statement.excluded.pinyin, "updated": statement.excluded.updated}))


def remove_tenant_word(engine: Engine, tenant: str, word: str) -> bool:
    """Remove a tenant's word; False when it was not there (blocking)."""
    with engine.begin() as connection:
        return bool(connection.execute(delete(_WORDS).where(
            _WORDS.c.tenant == tenant, _WORDS.c.word == word)).rowcount)


def words_fingerprint(connection: Connection) -> tuple[int, float]:
    """What changes whenever any tenant's words do: their count, the newest edit's time
    (blocking)."""
    count, newest = connection.execute(
        select(func.count(), func.coalesce(func.max(_WORDS.c.updated), 0.0))).one()
    return int(count), float(newest)


class Overlays:
    """Every tenant's words in memory, as the index had them when last read."""

    def __init__(self) -> None:
        self._words: dict[str, dict[str, str]] = {}
        self._longest: dict[str, int] = {}

    def set(self, words: dict[str, dict[str, str]]) -> None:
        """Read with these words from now on."""
        self._words = {t: dict(w) for t, w in words.items() if w}
        self._longest = {t: max(len(k) for k in w) for t, w in self._words.items()}

    def words_in(self, tenant: str, text: str) -> tuple[tuple[str, str], ...]:
        """The tenant's words that stand in the text, with their pinyin, in one order."""
        mine = self._words.get(tenant)
        if not mine:
            return ()
        longest = self._longest[tenant]
        found = {text[i : i + size] for i in range(len(text))
                 for size in range(1, min(longest, len(text) - i) + 1)
                 if text[i : i + size] in mine}
        return tuple(sorted((word, mine[word]) for word in found))

    def scoped(self, request: SpeechRequest, tenant: str) -> SpeechRequest:
        """The request as the tenant's: its tenant, and the tenant's words in its text."""
        words = self.words_in(tenant, request.text)
        if request.tenant == tenant and request.words == words:
            return request
        return dataclasses.replace(request, tenant=tenant, words=words)
