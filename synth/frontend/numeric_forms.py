"""Numbers written with compatibility characters, read before NFKC folds them away.

NFKC turns 10² into 102, ½ into 1⁄2 (and 3½ into 31⁄2), 10⁻³ into 10-3 and Ⅻ into XII:
texts that are read differently would be read alike, so these forms are rewritten into
spoken Chinese first. Everything else is left for the later rules and WeTextProcessing.
"""

from __future__ import annotations

import re
import unicodedata

from synth.frontend.numbers import read_cardinal, read_digits

_SUPER_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_SUB_DIGITS = "₀₁₂₃₄₅₆₇₈₉"
_TO_ASCII = str.maketrans(_SUPER_DIGITS + _SUB_DIGITS, "0123456789" * 2)
_SUPER = "[" + _SUPER_DIGITS + "]"
_SUB = "[" + _SUB_DIGITS + "]"
_SUPER_ANY = "[" + _SUPER_DIGITS + "⁺⁻⁼⁽⁾ⁿⁱ]"
_GAP = "[ \u00a0\u2009\u202f]"

# Squared and cubed units as one character, spelled out so one rule reads them all.
_UNIT_SIGNS = str.maketrans({
    "㎟": "mm²", "㎠": "cm²", "㎡": "m²", "㎢": "km²",
    "㎣": "mm³", "㎤": "cm³", "㎥": "m³", "㎦": "km³", "㎨": "m/s²",
    "⅟": "¹⁄",  # fraction numerator one
})
_METRE = {"": "米", "k": "公里", "c": "厘米", "m": "毫米", "d": "分米"}
_POWER = {"²": "平方", "³": "立方"}
_ACCELERATION = re.compile(r"(?<![A-Za-z])m/s²(?![A-Za-z])")
_AREA_VOLUME = re.compile(r"(?<![A-Za-z])(?P<prefix>[kcmd]?)m(?P<power>[²³])(?![A-Za-z]|" + _SUPER_ANY + ")")

_VULGAR = re.compile(
    rf"(?:(?<![\d.,])(?P<whole>\d+){_GAP}?)?(?P<fraction>[¼½¾\u2150-\u215e\u2189])"
)
# a⁄b with the fraction slash; ¹/₂ (superscript over subscript) with any slash.
_SLASHED = re.compile(
    rf"(?:(?<![\d.,])(?P<whole>\d+)(?P<gap>{_GAP}?))?"
    rf"(?P<num>\d+|{_SUPER}+)(?P<slash>[\u2044/\u2215])(?P<den>\d+|{_SUB}+)"
)

# An exponent follows a number, a Latin letter, a closing bracket or a subscript.
_BASE = rf"(?:(?<=\d)|(?<=[A-Za-z)\]）])|(?<={_SUB}))"
_OPERAND = rf"(?:{_SUPER}+|[ⁿⁱ])"
_EXPONENT = re.compile(
    rf"{_BASE}(?P<exp>⁽?[⁺⁻]?{_OPERAND}(?:[⁺⁻⁼]?{_OPERAND})*⁾?)(?!{_SUPER_ANY})"
)
# Superscripts with nothing to raise are footnote marks, which are not read aloud.
_FOOTNOTE = re.compile(rf"(?<![\dA-Za-z)\]）{_SUB_DIGITS}{_SUPER_ANY[1:-1]}]){_SUPER_ANY}+")
_SUBSCRIPT = re.compile(rf"{_SUB}+")
# Raised digits that are neither an exponent nor a footnote (the 2 of Ca²⁺) are still read
# on their own, never run into the digits beside them.
_RAISED = re.compile(rf"{_SUPER}+")

# Roman numerals U+2160..U+2188 with a value (Ↄ and ↄ are letters, not numbers alone).
_ROMAN = re.compile(r"[\u2160-\u2182\u2185-\u2188]+")
# Blocks of circled, parenthesized and other enclosed numbers (①, ⑴, ⒈, ❶, ㈠, ㊿).
_ENCLOSED = re.compile(
    "[\u2460-\u24ff\u2776-\u2793\u3220-\u3229\u3248-\u324f\u3251-\u325f"
    "\u3280-\u3289\u32b1-\u32bf\U0001f100-\U0001f10c]"
)
_EXPONENT_WORDS = {"⁺": "加", "⁻": "减", "⁼": "等于", "ⁿ": "n", "ⁱ": "i"}


def _number(digits: str) -> str:
    """A digit string as a cardinal; one with a leading zero (05) digit by digit."""
    plain = digits.translate(_TO_ASCII)
    if len(plain) > 1 and plain.startswith("0"):
        return read_digits(plain, yao=False)
    return read_cardinal(int(plain))


def _fraction(whole: str | None, numerator: str, denominator: str) -> str:
    spoken = f"{_number(denominator)}分之{_number(numerator)}"
    return f"{_number(whole)}又{spoken}" if whole else spoken


def _vulgar(match: re.Match[str]) -> str:
    numerator, denominator = unicodedata.normalize("NFKC", match["fraction"]).split("\u2044")
    return _fraction(match["whole"], numerator, denominator)


def _slashed(match: re.Match[str]) -> str:
    whole, gap, numerator, denominator = match["whole"], match["gap"], match["num"], match["den"]
    superscript = numerator[0] in _SUPER_DIGITS
    if match["slash"] != "\u2044" and not (superscript and denominator[0] in _SUB_DIGITS):
        return match[0]  # an ordinary slash between ordinary digits: read later
    if whole and not gap and not superscript:
        # 31⁄2 is thirty-one halves: only a space or a raised numerator starts a fraction.
        numerator, whole = whole + numerator, None
    return _fraction(whole, numerator, denominator)


def _exponent(match: re.Match[str]) -> str:
    exp = match["exp"]
    words: list[str] = []
    for token in re.findall(rf"{_SUPER}+|.", exp):
        if token[0] in _SUPER_DIGITS:
            words.append(_number(token))
        elif token in "⁽⁾":
            continue  # brackets only group the exponent
        elif not words and token in "⁺⁻":
            words.append("正" if token == "⁺" else "负")
        else:
            words.append(_EXPONENT_WORDS[token])
    return f"的{''.join(words)}次方"


def _area_volume(match: re.Match[str]) -> str:
    return _POWER[match["power"]] + _METRE[match["prefix"]]


def _roman(match: re.Match[str]) -> str:
    values = [int(unicodedata.numeric(c)) for c in match[0]]
    # Subtractive notation: a smaller value before a larger one is taken away (ⅩⅠⅤ is 14).
    total = sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))
    return read_cardinal(max(total, 0))


def _enclosed(match: re.Match[str]) -> str:
    """An enclosed number as its cardinal; enclosed letters and signs stay as they are."""
    char = match[0]
    value = unicodedata.numeric(char, None)
    if unicodedata.category(char) != "No" or value is None or value != int(value):
        return char
    return read_cardinal(int(value))


def read_numeric_forms(text: str) -> str:
    """Superscripts, subscripts, vulgar fractions, the fraction slash, squared units, Roman
    and circled numerals as spoken Chinese; the rest of the text unchanged."""
    text = text.translate(_UNIT_SIGNS)
    text = _SLASHED.sub(_slashed, text)
    text = _VULGAR.sub(_vulgar, text)
    text = _ACCELERATION.sub("米每二次方秒", text)
    text = _AREA_VOLUME.sub(_area_volume, text)
    text = _EXPONENT.sub(_exponent, text)
    text = _FOOTNOTE.sub("", text)
    text = _SUBSCRIPT.sub(lambda m: _number(m[0]), text)
    text = _RAISED.sub(lambda m: _number(m[0]), text)
    text = _ROMAN.sub(_roman, text)
    return _ENCLOSED.sub(_enclosed, text)
