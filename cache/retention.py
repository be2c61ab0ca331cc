"""What the index keeps of a prompt's text (the `store_text` setting).

`always` keeps every prompt's text; `named` keeps the text of named phrases (operators list
and search them) and of no other prompt; `never` keeps none. A prompt whose text is not
kept keeps its key (a hash of what is said) and its text's length; operators see "—" for
it. Rows stored under a looser setting follow at the next maintenance round.
"""

from __future__ import annotations

from sqlalchemy import Table, update
from sqlalchemy.engine import Engine

from cache.tables import PhraseRow

STORE_TEXT = ("always", "named", "never")
_PHRASES: Table = PhraseRow.__table__  # type: ignore[assignment]


def kept_text(mode: str, text: str, *, named: bool) -> str | None:
    """The text the index keeps of a prompt (named: it has a phrase id), under `mode`."""
    if mode == "always" or (mode == "named" and named):
        return text
    return None


def forget_texts(engine: Engine, mode: str) -> int:
    """Drop the texts the index holds and `mode` does not keep; how many (blocking)."""
    if mode == "always":
        return 0
    statement = update(_PHRASES).where(_PHRASES.c.text.is_not(None))
    if mode == "named":
        statement = statement.where(_PHRASES.c.phrase_id.is_(None))
    with engine.begin() as connection:
        return int(connection.execute(statement.values(text=None)).rowcount)
