"""SSML: documents parsed safely and checked, their say-as readings, and how an engine
speaks them."""

from synth.ssml.document import SsmlError, SsmlSyntaxError, is_ssml, parse_document
from synth.ssml.speaking import pronounce, spoken_form, stream, synthesize

__all__ = [
    "SsmlError",
    "SsmlSyntaxError",
    "is_ssml",
    "parse_document",
    "pronounce",
    "spoken_form",
    "stream",
    "synthesize",
]
