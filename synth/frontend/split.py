"""Sentence and clause splitting, keeping the pause each punctuation mark asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTENCE_END = "。.！？!?；;…\n"
CLAUSE_END = "，,、：:—"
_BREAK = re.compile(rf"([{re.escape(SENTENCE_END + CLAUSE_END)}]+)")


@dataclass(frozen=True)
class Clause:
    """A stretch of text between pauses, and whether a sentence ends after it."""

    text: str
    ends_sentence: bool


def split_clauses(text: str) -> list[Clause]:
    """Split normalized text into clauses; punctuation is consumed, its pause kept."""
    clauses: list[Clause] = []
    parts = _BREAK.split(text)
    for body, mark in zip(parts[0::2], [*parts[1::2], "。"], strict=True):
        body = body.strip()
        if not body:
            if clauses and any(c in SENTENCE_END for c in mark):
                last = clauses[-1]
                clauses[-1] = Clause(last.text, True)
            continue
        ends = any(c in SENTENCE_END for c in mark)
        clauses.append(Clause(body, ends))
    return clauses


def split_sentences(text: str) -> list[list[Clause]]:
    """Group clauses into sentences (the unit streamed and synthesized at once)."""
    sentences: list[list[Clause]] = []
    current: list[Clause] = []
    for clause in split_clauses(text):
        current.append(clause)
        if clause.ends_sentence:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences
