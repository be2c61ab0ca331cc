"""Mandarin text frontend: normalization, splitting, pinyin, sandhi and symbol ids."""

from synth.frontend.frontend import FRONTEND_VERSION, Frontend, Sentence, Utterance
from synth.frontend.g2p import G2P, Lexicon, LexiconError, load_lexicon, parse_lexicon
from synth.frontend.normalize import TextNormalizer, apply_ivr_rules, canonical_text, read_digits
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
    "read_digits",
    "split_clauses",
    "split_sentences",
]
