"""Mandarin text frontend: normalization, splitting, pinyin, sandhi and symbol ids."""

from synth.frontend.frontend import FRONTEND_VERSION, Frontend, Sentence, Utterance
from synth.frontend.g2p import G2P, Lexicon, LexiconError, load_lexicon, parse_lexicon
from synth.frontend.normalize import TextNormalizer, apply_ivr_rules, canonical_text
from synth.frontend.numbers import read_cardinal, read_digits
from synth.frontend.numeric_forms import read_numeric_forms
from synth.frontend.split import Clause, split_clauses, split_sentences
from synth.frontend.symbols import SymbolTable

__all__ = [
    "FRONTEND_VERSION",
    "G2P",
    "Clause",
    "Frontend",
    "Lexicon",
    "LexiconError",
    "Sentence",
    "SymbolTable",
    "TextNormalizer",
    "Utterance",
    "apply_ivr_rules",
    "canonical_text",
    "load_lexicon",
    "parse_lexicon",
    "read_cardinal",
    "read_digits",
    "read_numeric_forms",
    "split_clauses",
    "split_sentences",
]
