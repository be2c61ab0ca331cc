"""Chinese readings of integers: digit by digit (codes, phone numbers) and as cardinals."""

from __future__ import annotations

DIGITS = "零一二三四五六七八九"
DIGITS_YAO = "零幺二三四五六七八九"

_PLACES = ((1000, "千"), (100, "百"), (10, "十"), (1, ""))
# Four-digit groups from the largest; past 万亿 numbers are read digit by digit instead.
_GROUPS = ((10**12, "万亿"), (10**8, "亿"), (10**4, "万"), (1, ""))
_LARGEST = 10**16


def read_digits(digits: str, *, yao: bool = True) -> str:
    """Read a digit string one digit at a time, 1 as 幺 when `yao` (phone-number style)."""
    table = DIGITS_YAO if yao else DIGITS
    return "".join(table[int(d)] if d.isdigit() else d for d in digits)


def _group(number: int) -> str:
    """1..9999 with inner zeros said once (一千零五); no leading zero, 一十 kept."""
    out: list[str] = []
    zero_pending = False
    for value, unit in _PLACES:
        digit = number // value % 10
        if digit == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        out.append(DIGITS[digit] + unit)
    return "".join(out)


def read_cardinal(number: int) -> str:
    """Read a non-negative integer as a Chinese cardinal: 十二, 一百零五, 两千, 十万零一十."""
    if number < 0:
        return "负" + read_cardinal(-number)
    if number == 0:
        return "零"
    if number >= _LARGEST:
        return read_digits(str(number), yao=False)
    parts: list[str] = []
    zero_pending = False
    for scale, name in _GROUPS:
        group = number // scale % 10000
        if group == 0:
            zero_pending = bool(parts)
            continue
        if parts and (zero_pending or group < 1000):
            parts.append("零")
        parts.append(_group(group) + name)
        zero_pending = False
    text = "".join(parts)
    if text.startswith("一十"):
        return text[1:]
    # A leading 2 before a hundred or more is 两, as the number reader says it (两千, 两万).
    if text.startswith("二") and text[1:2] in ("百", "千", "万", "亿"):
        return "两" + text[1:]
    return text


def read_ordinal(number: int) -> str:
    """The number of an ordinal (after 第): a cardinal whose 2 is always 二 (第二, 第二百)."""
    text = read_cardinal(number)
    return "二" + text[1:] if text.startswith("两") else text


def read_hour(hour: int) -> str:
    """An hour of the clock: 两 for 2 (两点), else the cardinal."""
    return "两" if hour == 2 else read_cardinal(hour)


def read_minutes(minute: int) -> str:
    """Minutes past the hour with their 分 (零五分, 三十分); nothing for 0."""
    if minute == 0:
        return ""
    if minute < 10:
        return f"零{DIGITS[minute]}分"
    return f"{read_cardinal(minute)}分"
