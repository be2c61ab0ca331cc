"""Sentence splitting and the symbol sequences the acoustic model receives."""

from __future__ import annotations

from synth.frontend import Frontend, split_clauses, split_sentences
from synth.frontend.frontend import MAX_SYLLABLES


def test_clauses_and_sentences() -> None:
    text = "您好,欢迎致电.查询余额请按一;返回请按零"
    assert [c.text for c in split_clauses(text)] == ["您好", "欢迎致电", "查询余额请按一", "返回请按零"]
    sentences = split_sentences(text)
    assert [[c.text for c in s] for s in sentences] == [
        ["您好", "欢迎致电"], ["查询余额请按一"], ["返回请按零"]
    ]


def test_repeated_punctuation_makes_no_empty_clause() -> None:
    assert [c.text for c in split_clauses("再见!!!……好的")] == ["再见", "好的"]


def test_sequence_has_the_trained_prosody_markers(frontend: Frontend) -> None:
    utterance = frontend.analyze("您好，请按一。")
    (sentence,) = utterance.sentences
    table = {v: k for k, v in frontend._symbols.symbol_to_id.items()}
    symbols = [table[i] for i in sentence.ids]
    assert symbols[0] == "sil" and symbols[-2:] == ["sil", "eos"]
    assert "#3" in symbols  # the comma becomes an intonation break
    assert symbols.count("#3") == 1


def test_long_text_is_split_into_bounded_model_calls(frontend: Frontend) -> None:
    text = "请您耐心等待" * 40  # 240 syllables, no punctuation at all
    utterance = frontend.analyze(text)
    counts = [len(s.syllables) for s in utterance.sentences]
    assert sum(counts) == 240
    assert max(counts) <= MAX_SYLLABLES
