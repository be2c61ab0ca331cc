"""`say-as` readings: what a span is said as, for each `interpret-as` value.

For a Chinese voice each reading is written out in Chinese characters (or, for a
surname, with its syllables), so the voice's own normalizer has nothing left to guess.
A voice of another language gets the span as text, with digits and characters spaced
apart where the reading is one by one.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from synth.frontend.numbers import (
    DIGITS,
    read_cardinal,
    read_digits,
    read_hour,
    read_minutes,
    read_ordinal,
)
from synth.ssml.nodes import SsmlError


@dataclass(frozen=True)
class Piece:
    """A stretch of a segment: `written` text (normalized as any text), text `spoken` as
    it is (a say-as reading) or characters with their `reading` given (syllables, one per
    character). `source` names who decided the reading ('ssml'), for the preview."""

    text: str
    kind: str = "written"
    syllables: tuple[str, ...] = ()
    source: str | None = None


# How a Chinese voice names characters read one by one.
SYMBOL_NAMES: Mapping[str, str] = {
    "_": "下划线", "-": "横杠", ".": "点", "@": "艾特", "/": "斜杠", "\\": "反斜杠",
    "#": "井号", "*": "星号", "+": "加号", "&": "和", "%": "百分号", ":": "冒号",
    "=": "等号", "~": "波浪号", "$": "美元符号", "¥": "人民币符号", "α": "阿尔法",
    "β": "贝塔", "γ": "伽马", "δ": "德尔塔",
    "ε": "艾普西隆", "θ": "西塔", "λ": "兰姆达", "μ": "缪", "π": "派", "σ": "西格玛",
    "ω": "欧米伽",
}
PUNCTUATION_NAMES: Mapping[str, str] = {
    "，": "逗号", ",": "逗号", "。": "句号", "？": "问号", "?": "问号", "！": "感叹号",
    "!": "感叹号", "、": "顿号", "；": "分号", ";": "分号", "：": "冒号", ":": "冒号",
    "…": "省略号", "“": "左引号", "”": "右引号", "\"": "引号", "‘": "左单引号",
    "’": "右单引号", "'": "单引号", "（": "左括号", "(": "左括号", "）": "右括号",
    ")": "右括号", "《": "左书名号", "》": "右书名号", "【": "左方括号", "】": "右方括号",
    "[": "左方括号", "]": "右方括号", "—": "破折号", "-": "横杠", "·": "间隔号",
    ".": "点", "/": "斜杠", "@": "艾特", "#": "井号", "*": "星号", "_": "下划线",
}
# Surnames a dictionary reads as the common word: 单 is shàn as a name, not dān.
SURNAMES: Mapping[str, tuple[str, ...]] = {
    "尉迟": ("yu4", "chi2"), "万俟": ("mo4", "qi2"), "长孙": ("zhang3", "sun1"),
    "澹台": ("tan2", "tai2"), "单于": ("chan2", "yu2"), "令狐": ("ling2", "hu2"),
    "单": ("shan4",), "曾": ("zeng1",), "解": ("xie4",), "区": ("ou1",), "仇": ("qiu2",),
    "朴": ("piao2",), "查": ("zha1",), "盖": ("ge3",), "种": ("chong2",), "华": ("hua4",),
    "任": ("ren2",), "乐": ("yue4",), "黑": ("he4",), "繁": ("po2",), "折": ("she2",),
    "缪": ("miao4",), "员": ("yun4",), "覃": ("qin2",), "訾": ("zi1",), "翟": ("zhai2",),
    "秘": ("bi4",), "燕": ("yan1",), "纪": ("ji3",), "隗": ("wei3",), "召": ("shao4",),
    "句": ("gou1",), "过": ("guo1",), "牟": ("mu4",), "冼": ("xian3",), "洗": ("xian3",),
    "重": ("chong2",), "薄": ("bo2",), "葛": ("ge3",), "柏": ("bai3",), "阚": ("kan4",),
    "哈": ("ha3",), "宁": ("ning4",), "能": ("nai4",), "都": ("du1",), "莘": ("shen1",),
    "贲": ("ben1",), "盛": ("sheng4",), "尉": ("wei4",), "车": ("che1",), "曲": ("qu1",),
    "强": ("qiang2",), "藏": ("zang4",), "朝": ("chao2",), "沈": ("shen3",),
}
_CURRENCIES = (  # foreign currencies first: their names end in 元 too
    (re.compile(r"^(?:US\$|USD)\s*|\s*(?:美元|USD)$|^\$\s*"), "美元"),
    (re.compile(r"^(?:HK\$|HKD)\s*|\s*(?:港元|港币|HKD)$"), "港元"),
    (re.compile(r"^(?:€|EUR)\s*|\s*(?:欧元|EUR)$"), "欧元"),
    (re.compile(r"^(?:£|GBP)\s*|\s*(?:英镑|GBP)$"), "英镑"),
    (re.compile(r"^JPY\s*|\s*(?:日元|JPY)$"), "日元"),
    (re.compile(r"^(?:¥|RMB|CNY|人民币)\s*|\s*(?:元|块|人民币|RMB|CNY)$"), "元"),
)
_AMOUNT = re.compile(r"(-)?(\d{1,3}(?:,\d{3})+|\d{1,15})(?:\.(\d{1,6}))?")
_DATE_PARTS = re.compile(r"\d{1,8}")
_DATE_ORDERS = {"ymd", "mdy", "dmy", "ym", "my", "md", "dm", "y", "m", "d"}
_CLOCK = re.compile(
    r"(?P<before>上午|下午|中午|晚上|凌晨|早上)?(?P<h>\d{1,2})[:：](?P<m>\d{2})(?:[:：](?P<s>\d{2}))?"
    r"(?P<after>am|pm|AM|PM|上午|下午)?")
_ADDRESS_NUMBER = re.compile(r"\d+")
# Counting words after which an address number is a quantity (一万号, 三单元, 十二层);
# other numbers (rooms, 304; 1201室) are read digit by digit.
_ADDRESS_COUNTED = ("号院", "号楼", "号", "栋", "幢", "座", "单元", "层", "楼", "弄", "巷",
                    "路", "街", "村", "组", "期", "区")
_SPACED = re.compile(r"(?<=\S)(?=\S)")


def say_as(kind: str, text: str, fmt: str | None, language: str) -> list[Piece]:
    """The pieces a say-as span is said as; SsmlError when its text is not what the
    reading needs (a cardinal that is no number)."""
    content = " ".join(text.split())
    if not content:
        return []
    if not language.startswith("zh"):
        if kind in ("digits", "telephone", "id", "characters"):
            return [Piece(_SPACED.sub(" ", content.replace(" ", "")), "written", source="ssml")]
        return [Piece(content, "written", source="ssml")]
    reader = _READERS[kind]
    return reader(content, fmt)


def _spoken(text: str) -> list[Piece]:
    return [Piece(text, "spoken", source="ssml")]


def _digits(text: str, _fmt: str | None) -> list[Piece]:
    return _spoken(_one_by_one(text, yao=False))


def _telephone(text: str, _fmt: str | None) -> list[Piece]:
    # 1 is 幺 on the telephone; the groups the number is written in are kept as pauses.
    plus = "加" if text.startswith("+") else ""
    groups = [g for g in re.split(r"[\s\-()（）+]+", text) if g]
    return _spoken(plus + "，".join(_one_by_one(g, yao=True) for g in groups))


def _id(text: str, _fmt: str | None) -> list[Piece]:
    return _spoken(_one_by_one(text.replace(" ", "").replace("-", ""), yao=True))


def _one_by_one(text: str, *, yao: bool) -> str:
    """Digits one at a time; letters stay (the voice names them); symbols named."""
    out = []
    for char in text:
        if char.isdigit() and char.isascii():
            out.append(read_digits(char, yao=yao))
        elif char == "加" or char.isalpha():
            out.append(char)
        elif char in SYMBOL_NAMES:
            out.append(SYMBOL_NAMES[char])
    return "".join(out)


def _characters(text: str, _fmt: str | None) -> list[Piece]:
    # Each character alone: a letter by its name, a digit as its digit, a symbol named
    # (full-width forms as their ASCII ones).
    spoken = []
    for char in unicodedata.normalize("NFKC", text).replace(" ", ""):
        if char.isascii() and char.isdigit():
            spoken.append(DIGITS[int(char)])
        elif char in SYMBOL_NAMES:
            spoken.append(SYMBOL_NAMES[char])
        elif char in PUNCTUATION_NAMES:
            spoken.append(PUNCTUATION_NAMES[char])
        else:
            spoken.append(char.upper() if char.isascii() else char)
    return _spoken(" ".join(spoken))


def _number(text: str, what: str) -> str:
    match = _AMOUNT.fullmatch(text.replace(" ", ""))
    if match is None:
        raise SsmlError(f"<say-as interpret-as='{what}'> needs a number, not '{text[:40]}'")
    sign, whole, fraction = match.groups()
    spoken = read_cardinal(int(whole.replace(",", "")))
    if fraction:
        spoken += "点" + read_digits(fraction, yao=False)
    return ("负" if sign else "") + spoken


def _cardinal(text: str, _fmt: str | None) -> list[Piece]:
    return _spoken(_number(text, "cardinal"))


def _ordinal(text: str, _fmt: str | None) -> list[Piece]:
    match = re.fullmatch(r"第?\s*(\d{1,12})\s*([^\d.,\s]{0,4})", text)
    if match is None:
        raise SsmlError(f"<say-as interpret-as='ordinal'> needs a whole number, not '{text[:40]}'")
    return _spoken("第" + read_ordinal(int(match.group(1))) + match.group(2))


def _date(text: str, fmt: str | None) -> list[Piece]:
    parts = _DATE_PARTS.findall(text)
    if len(parts) == 1 and len(text.strip()) == 8 and text.strip().isdigit():  # 20250301
        whole = text.strip()
        parts = [whole[:4], whole[4:6], whole[6:]]
    order = (fmt or "").lower()
    if order and order not in _DATE_ORDERS:
        raise SsmlError(f"<say-as format='{fmt[:20] if fmt else ''}'>: one of "
                        f"{', '.join(sorted(_DATE_ORDERS))}")
    if not order and len(parts) == 3:
        # Year first as Chinese dates are written; else day first when it cannot be a month.
        order = "ymd" if len(parts[0]) == 4 else "dmy" if int(parts[0]) > 12 else "mdy"
    elif not order and len(parts) == 2:
        order = "ym" if len(parts[0]) == 4 else "my" if len(parts[1]) == 4 else "md"
    elif not order and len(parts) == 1:
        # One number: what its character says it is (3月, 15日, 15号), else a year.
        unit = text.strip()[-1:]
        order = {"月": "m", "日": "d", "号": "d"}.get(unit, "y")
    if not parts or len(parts) != len(order):
        raise SsmlError(f"<say-as interpret-as='date'> cannot read '{text[:40]}' as a date")
    values = dict(zip(order, parts, strict=True))
    month, day = int(values.get("m", "1")), int(values.get("d", "1"))
    year = int(values["y"]) if "y" in values else 2000  # a leap year: 2月29日 stands alone
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(max(year, 1), month)[1]:
        raise SsmlError(f"<say-as interpret-as='date'>: '{text[:40]}' is not a date")
    spoken = ""
    if "y" in values:
        spoken += read_digits(values["y"], yao=False) + "年"
    if "m" in values:
        spoken += read_cardinal(month) + "月"
    if "d" in values:
        spoken += read_cardinal(day) + "日"
    return _spoken(spoken)


def _time(text: str, _fmt: str | None) -> list[Piece]:
    compact = text.replace(" ", "")
    match = _CLOCK.fullmatch(compact)
    if match is None:
        raise SsmlError(f"<say-as interpret-as='time'> needs hh:mm or hh:mm:ss, not '{text[:40]}'")
    before, hour, minute = match.group("before") or "", int(match.group("h")), int(match.group("m"))
    second = int(match.group("s") or 0)
    after = (match.group("after") or "").lower()
    if hour > 24 or minute > 59 or second > 59 or hour == 24 and (minute or second):
        raise SsmlError(f"<say-as interpret-as='time'>: '{text[:40]}' is not a time")
    if after in ("am", "pm") and not 1 <= hour <= 12:
        raise SsmlError(f"<say-as interpret-as='time'>: '{text[:40]}' is not a time")
    if after == "am":
        before, hour = ("凌晨", 0) if hour == 12 else ("上午", hour)
    elif after == "pm":
        before = "中午" if hour == 12 else "下午"
    spoken = before + {"上午": "上午", "下午": "下午"}.get(after, "")
    spoken += read_hour(hour) + "点" + read_minutes(minute)
    if second:
        spoken += ("" if minute else "零分") + read_cardinal(second) + "秒"
    return _spoken(spoken)


def _currency(text: str, _fmt: str | None) -> list[Piece]:
    amount, unit = unicodedata.normalize("NFKC", text).strip(), "元"
    sign = ""
    if amount.startswith("-"):
        sign, amount = "负", amount[1:].strip()
    amount = amount.removesuffix("整")
    for pattern, name in _CURRENCIES:
        stripped = pattern.sub("", amount)
        if stripped != amount:
            amount, unit = stripped.strip(), name
            break
    if amount.startswith("-"):
        sign, amount = "负", amount[1:].strip()
    scale = ""
    if amount[-1:] in ("万", "亿"):
        amount, scale = amount[:-1], amount[-1]
    match = _AMOUNT.fullmatch(amount.replace(" ", ""))
    if match is None:
        raise SsmlError(f"<say-as interpret-as='currency'> needs an amount, not '{text[:40]}'")
    _, whole_text, fraction = match.groups()
    whole = int(whole_text.replace(",", ""))
    fraction = (fraction or "").rstrip("0")
    if unit == "元" and not scale and len(fraction) <= 2:  # 元, 角, 分 as prices are said
        cents = fraction.ljust(2, "0")
        jiao, fen = int(cents[0]), int(cents[1])
        spoken = _money(whole) + "元" if whole or not (jiao or fen) else ""
        if jiao:
            spoken += f"{DIGITS[jiao]}角"
        elif fen and spoken:
            spoken += "零"
        if fen:
            spoken += f"{DIGITS[fen]}分"
    else:
        spoken = (_money(whole) + ("点" + read_digits(fraction, yao=False) if fraction else "")
                  + scale + unit)
    return _spoken(sign + spoken)


def _money(whole: int) -> str:
    """An amount's whole part: 2 is 两 before a currency (两元), as elsewhere 两百."""
    return "两" if whole == 2 else read_cardinal(whole)


def _name(text: str, _fmt: str | None) -> list[Piece]:
    for surname in sorted(SURNAMES, key=len, reverse=True):
        if text.startswith(surname):
            rest = text[len(surname):]
            return [Piece(surname, "reading", SURNAMES[surname], "ssml"),
                    *([Piece(rest, "written", source="ssml")] if rest else [])]
    return [Piece(text, "written", source="ssml")]


def _address(text: str, _fmt: str | None) -> list[Piece]:
    out: list[str] = []
    at = 0
    for match in _ADDRESS_NUMBER.finditer(text):
        out.append(text[at:match.start()])
        rest = text[match.end():]
        digits = match.group(0)
        if rest.startswith(_ADDRESS_COUNTED) and len(digits) <= 5:
            out.append(read_cardinal(int(digits)))
        elif len(digits) <= 2:
            out.append(read_cardinal(int(digits)))
        else:
            out.append(read_digits(digits, yao=True))
        at = match.end()
    out.append(text[at:])
    spoken = "".join(out).replace("-", "杠").replace("#", "号")
    return [Piece(spoken, "written", source="ssml")]


def _punctuation(text: str, _fmt: str | None) -> list[Piece]:
    spoken = [PUNCTUATION_NAMES.get(c, SYMBOL_NAMES.get(c, c)) for c in text if not c.isspace()]
    return _spoken("".join(spoken))


_READERS = {
    "digits": _digits, "telephone": _telephone, "cardinal": _cardinal, "ordinal": _ordinal,
    "characters": _characters, "date": _date, "time": _time, "currency": _currency,
    "id": _id, "name": _name, "address": _address, "punctuation": _punctuation,
}
