"""Text normalization for IVR speech: our rules for digit strings, times and symbols,
then WeTextProcessing for the rest of Chinese number reading."""

from __future__ import annotations

import re
import tempfile
import threading
import unicodedata
from pathlib import Path

from synth.frontend.numbers import (
    read_cardinal,
    read_digits,
    read_hour,
    read_minutes,
    read_ordinal,
)
from synth.frontend.numeric_forms import read_numeric_forms
from synth.frontend.wetext import WeTextNormalizer, plain_table
from synth.memo import Memo

# Words after which a number is an identifier read digit by digit.
_ID_KEYWORDS = (
    "验证码|校验码|动态码|动态密码|取件码|提货码|取餐码|邀请码|优惠码|兑换码|激活码|密码|"
    "订单号|单号|运单号|工单号|流水号|合同号|保单号|会员号|工号|编号|账号|帐号|卡号|"
    "尾号|号码|手机号|电话号|分机号?|热线|电话|致电|拨打|呼叫|回拨|来电|车牌号?|房间号?|"
    "航班号?|车次|座位号|身份证号?|证件号|邮编|代码|序号|批次号?|"
    "(?:后|末|前)(?:[1-9]|[一二三四五六七八九十]{1,2})位"
)
_ID_AFTER_KEYWORD = re.compile(
    rf"(?P<kw>{_ID_KEYWORDS})(?P<link>(?:是|为|：|:|\s|号|码|请)*)"
    r"(?P<id>[A-Za-z]*\d[\dA-Za-z\- ]*[\dA-Za-z]|[A-Za-z]*\d)(?![\dA-Za-z]|[.,]\d)"
    r"(?!\s*(?:次|个|位|天|小时|分钟|秒|元|块|年|月|日|周|岁|人|%|点|倍|折))"
)
_PHONE_PATTERNS = (
    re.compile(r"(?<!\d)(?<!\d\.)(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d|\.\d)"),  # mobile
    re.compile(r"(?<!\d)(?<!\d\.)[48]00[ -]?\d{3}[ -]?\d{4}(?!\d|\.\d)"),  # 400 / 800 service lines
    re.compile(r"(?<!\d)(?<!\d\.)\(?0\d{2,3}\)?[ -]\d{7,8}(?!\d|\.\d)"),  # landline with area code
    re.compile(r"(?<!\d)(?<!\d[.,])\d{3,4}-\d{3,4}-\d{3,4}(?!\d|\.\d)"),  # any dashed number
)
# Letters followed by digits: flight, train and tracking numbers (CA1831, G1234, SF123456).
_ALNUM_CODE = re.compile(r"(?<![A-Za-z\d])(?P<letters>[A-Za-z]{2,}|[A-Za-z](?=\d{4}))(?P<digits>\d{3,})")
# Seven or more bare digits are an identifier unless a currency or unit follows.
_LONG_DIGITS = re.compile(r"(?<!\d)(?<!\d[.,])\d{7,}(?!\d|[.,]\d|\s*(?:元|块|万|亿|美元|人民币|%|‰))")
# Two years joined by 至, 到 or a dash, before 年 (or a season, a fiscal year): both are
# years, read digit by digit (二零二五至二零二六年), not the first as a cardinal.
_YEAR_RANGE = re.compile(
    r"(?<!\d)((?:1[5-9]|20)\d{2})\s*(至|到|~|～|-|—|–)\s*((?:1[5-9]|20)\d{2})"
    r"(?=\s*(?:年|赛季|财年|学年))"
)
# A negative percentage is said with 负 before 百分之.
_NEGATIVE_PERCENT = re.compile(r"(?<![\d.])-(\d+(?:\.\d+)?)\s*%")
_CLOCK_RANGE = re.compile(
    r"(?<!\d)((?:[01]?\d|2[0-4])[:：][0-5]\d)\s*[-~～—–]\s*((?:[01]?\d|2[0-4])[:：][0-5]\d)(?!\d)"
)
_CLOCK = re.compile(r"(?<!\d)(?<!\d\.)([01]?\d|2[0-4])[:：]([0-5]\d)(?:[:：]([0-5]\d))?(?![\d])")
_HOUR_MINUTE = re.compile(r"(?<!\d)(?<!\d\.)([01]?\d|2[0-4])点(?:([0-5]?\d)分?|(半|整|钟))?(?!\d|\.\d)")
_ISO_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])(?!\d)")
_RANGE = re.compile(
    r"(?<![\d.\-])(\d+(?:\.\d+)?)\s*[-~～—–]\s*(?!0\d)(\d+(?:\.\d+)?)(?=\s*[^\d\s.\-:：/])"
)
_AMOUNT = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_MONEY_PREFIX = re.compile(rf"(?:[¥￥]|RMB\s?|CNY\s?){_AMOUNT}")
_DOLLAR_PREFIX = re.compile(rf"(?:US)?\$\s?{_AMOUNT}")
# Whole amounts written with zero cents (1,299.00元) are said without them.
_ZERO_CENTS = re.compile(r"(?<=\d)\.0+(?=\s*(?:元|块|美元))")
_KEY_SYMBOLS = (
    (re.compile(r"[#＃](?=号?键)"), "井"),
    (re.compile(r"[*＊✱](?=号?键)"), "星"),
    (re.compile(r"[#＃]"), "井号"),
    (re.compile(r"(?<=按)[*＊]|[*＊](?=号)"), "星"),
)
_UNITS = (
    (re.compile(r"(?<=\d)\s*°C"), "摄氏度"),
    (re.compile(r"(?<=\d)\s*°F"), "华氏度"),
    (re.compile(r"(?<=\d)\s*km/h"), "公里每小时"),
    (re.compile(r"(?<=\d)\s*(?:kg|KG|Kg)(?![A-Za-z])"), "公斤"),
    (re.compile(r"(?<=\d)\s*mmHg(?![A-Za-z])"), "毫米汞柱"),
    (re.compile(r"(?<=\d)\s*km(?![A-Za-z])"), "公里"),
    (re.compile(r"(?<=\d)\s*cm(?![A-Za-z])"), "厘米"),
    (re.compile(r"(?<=\d)\s*mm(?![A-Za-z])"), "毫米"),
    (re.compile(r"(?<=\d)\s*ml(?![A-Za-z])"), "毫升"),
    (re.compile(r"(?<=\d)\s*(?:min|mins)(?![A-Za-z])"), "分钟"),
)
# Blood pressure is two readings, systolic to diastolic, said with 比 (not a fraction).
_BLOOD_PRESSURE = re.compile(
    r"(?:(?<=血压)(?P<link>(?:值|是|为|：|:|\s)*)|(?<![\d./]))"
    r"(?P<sys>\d{2,3})/(?P<dia>\d{2,3})(?![\d/.])(?P<unit>\s*(?:mmHg|毫米汞柱))?"
    r"(?(link)|(?(unit)|(?!)))"  # after 血压, or with its unit
)
# An integer after 第 is an ordinal: 第二位, 第二百名, never 两 (which counts things).
# A fraction, a decimal or a clock time after 第 is not one.
_ORDINAL = re.compile(r"(?<=第)(\d{1,12})(?![\d.,/:：]\d)")
# 第1/3期 is the first of three (instalments, stages, episodes), never a third: the
# ordinal, then how many there are, with the counting word after it when there is one.
_ONE_OF = re.compile(r"第(\d{1,6})\s*/\s*(\d{1,6})(?![\d.,/])(?P<unit>[期次批轮章集页部阶段]{0,2})")
# 2^10 and 10^-3: a power, as the raised forms are read.
_CARET_POWER = re.compile(r"(?<=[\dA-Za-z)])\^(?P<sign>[+-]?)(?P<exp>\d+)")
_OTHER_SYMBOLS = (
    (re.compile(r"(?<=\d)\s*\+(?=\s*\d)"), "加"),
    (re.compile(r"(?<=\d)\s*(?:=|＝)"), "等于"),
    (re.compile(r"(?<=[A-Za-z\d])@(?=[A-Za-z\d])"), "艾特"),
    (re.compile(r"(?<=[A-Za-z])\.(?=[A-Za-z])"), "点"),
    (re.compile(r"&"), "和"),
    (re.compile(r"‰"), "千分之"),
)


def _read_identifier(raw: str) -> str:
    """Digits one by one; letters kept (read by name later); dashes and spaces dropped."""
    return "".join(read_digits(c) if c.isdigit() else c for c in raw if c not in "- ")


def _clock(match: re.Match[str]) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    text = f"{read_hour(hour)}点{read_minutes(minute)}"
    if match.group(3) is not None:
        second = int(match.group(3))
        text += f"{read_cardinal(second)}秒" if second else ""
    return text


def _hour_minute(match: re.Match[str]) -> str:
    hour = int(match.group(1))
    text = f"{read_hour(hour)}点"
    if match.group(2) is not None:
        text += read_minutes(int(match.group(2))) or "整"
    elif match.group(3) is not None:
        text += match.group(3)
    return text


def _keyword_id(match: re.Match[str]) -> str:
    return match.group("kw") + match.group("link") + _read_identifier(match.group("id"))


def _phone(match: re.Match[str]) -> str:
    return _read_identifier(match.group(0).replace("+", "").replace("(", "").replace(")", ""))


def _blood_pressure(match: re.Match[str]) -> str:
    # Said here, not by WeTextProcessing, which reads 110, 120 and 119 as hotline numbers.
    systolic, diastolic = read_cardinal(int(match.group("sys"))), read_cardinal(int(match.group("dia")))
    unit = "毫米汞柱" if match.group("unit") else ""
    return f"{match.group('link') or ''}{systolic}比{diastolic}{unit}"


def _one_of(match: re.Match[str]) -> str:
    unit = match.group("unit")
    first = f"第{read_ordinal(int(match.group(1)))}{unit}"
    if re.match(r"\s*[,，]?\s*共", match.string[match.end():]):  # the count follows already
        return first
    return f"{first}，共{read_cardinal(int(match.group(2)))}{unit}"


def _power(match: re.Match[str]) -> str:
    sign = {"+": "正", "-": "负"}.get(match.group("sign"), "")
    return f"的{sign}{read_cardinal(int(match.group('exp')))}次方"


def apply_ivr_rules(text: str) -> str:
    """Rewrite the parts of IVR text that general normalizers misread; leaves the rest."""
    text = _BLOOD_PRESSURE.sub(_blood_pressure, text)
    text = _ISO_DATE.sub(lambda m: f"{m.group(1)}年{int(m.group(2))}月{int(m.group(3))}日", text)
    text = _YEAR_RANGE.sub(lambda m: read_digits(m.group(1), yao=False)
                           + (m.group(2) if m.group(2) in "至到" else "到")
                           + read_digits(m.group(3), yao=False), text)
    text = _NEGATIVE_PERCENT.sub(r"负\1%", text)
    text = _CLOCK_RANGE.sub(r"\1至\2", text)
    text = _CLOCK.sub(_clock, text)
    text = _HOUR_MINUTE.sub(_hour_minute, text)
    for pattern in _PHONE_PATTERNS:
        text = pattern.sub(_phone, text)
    text = _ID_AFTER_KEYWORD.sub(_keyword_id, text)
    text = _ALNUM_CODE.sub(lambda m: m.group("letters") + read_digits(m.group("digits")), text)
    text = _LONG_DIGITS.sub(lambda m: read_digits(m.group(0)), text)
    text = _MONEY_PREFIX.sub(r"\1元", text)
    text = _ZERO_CENTS.sub("", text)
    text = _DOLLAR_PREFIX.sub(r"\1美元", text)
    text = _RANGE.sub(r"\1到\2", text)
    text = _ONE_OF.sub(_one_of, text)
    text = _ORDINAL.sub(lambda m: read_ordinal(int(m.group(1))), text)
    text = _CARET_POWER.sub(_power, text)
    for pattern, spoken in (*_KEY_SYMBOLS, *_UNITS, *_OTHER_SYMBOLS):
        text = pattern.sub(spoken, text)
    return text


_SPACES = re.compile(r"\s+")
_SPACE_BETWEEN_CJK = re.compile(r"(?<=[^\x00-\x7f])\s+|\s+(?=[^\x00-\x7f])")


def canonical_text(text: str) -> str:
    """NFKC, unified quotes and dashes, collapsed whitespace: changes nothing that is spoken."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2014", "-").replace("\u2013", "-").replace("\u2212", "-")
    text = "".join(" " if unicodedata.category(c) in {"Cc", "Zs", "Zl", "Zp"} else c for c in text)
    text = _SPACES.sub(" ", text).strip()
    return _SPACE_BETWEEN_CJK.sub("", text)


# Where WeTextProcessing may be given a text in pieces: after a sentence's end (canonical
# text has ASCII ! ? ;), and after a comma or 、 that is not inside a number (1,000).
_PIECE_END = re.compile(r"(?<=[。!?;、])|(?<=(?<!\d),)|(?<=,)(?!\d)")
PIECES_KEPT = 4096
# A piece of nothing but Chinese characters and these marks has nothing for
# WeTextProcessing's rules (all start at a digit, a letter or a symbol): it only maps
# traditional characters to simplified ones, full-width marks to ASCII and drops 呃 and 啊.
# That is done here from its own tables, at a fraction of the cost; a test checks the two
# agree on every corpus text.
_PLAIN_PIECE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff,.!?;、。…“”‘’]+")


class TextNormalizer:
    """Written text to spoken Chinese characters. Loads WeTextProcessing's FSTs once (kept
    in `cache_dir`, by default the system's temporary folder: synth/frontend/wetext.py).

    Safe to call from several threads: WeTextProcessing's FSTs are used one call at a time.
    """

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._plain = plain_table()  # first: it checks WeTextProcessing's release

        # Piece by piece, remembered: WeTextProcessing reads a sentence's clauses the same
        # alone as inside it (checked on every corpus text), and it is most of a text's
        # analysis; texts share clauses (greetings), and a preview while typing changes one.
        self._wetext: Memo[[str], str] = Memo(
            WeTextNormalizer(cache_dir or Path(tempfile.gettempdir()) / "huiyin").normalize,
            PIECES_KEPT)
        self._lock = threading.Lock()

    def normalize(self, text: str) -> str:
        """Read the forms NFKC would merge, canonicalize, apply the IVR rules, then
        WeTextProcessing for the remaining numbers."""
        rewritten = apply_ivr_rules(canonical_text(read_numeric_forms(text)))
        with self._lock:
            return "".join(self._piece(part) for part in _PIECE_END.split(rewritten) if part)

    def whole(self, text: str) -> str:
        """The same, with WeTextProcessing given the whole text at once (for checking)."""
        rewritten = apply_ivr_rules(canonical_text(read_numeric_forms(text)))
        with self._lock:
            return str(self._wetext.__wrapped__(rewritten))

    def _piece(self, piece: str) -> str:
        if _PLAIN_PIECE.fullmatch(piece):
            return piece.translate(self._plain)
        return self._wetext(piece)
