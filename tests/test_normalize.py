"""Text normalization: what the voice is asked to say for IVR text."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from synth.frontend import (
    Frontend,
    apply_ivr_rules,
    canonical_text,
    read_cardinal,
    read_digits,
    read_numeric_forms,
)

DATA = Path(__file__).resolve().parent / "data"


def _tn_rows() -> list[tuple[str, str, str]]:
    with (DATA / "tn_public.tsv").open(encoding="utf-8") as fh:
        return [(r["id"], r["written"], r["spoken"]) for r in csv.DictReader(fh, delimiter="\t")]


def _comparable(text: str) -> str:
    # 幺 and 一 are both acceptable for a digit read alone; spaces between letters are not spoken.
    return text.replace("幺", "一").replace(" ", "")


@pytest.mark.parametrize(("row_id", "written", "spoken"), _tn_rows())
def test_public_normalization_set(frontend: Frontend, row_id: str, written: str, spoken: str) -> None:
    assert _comparable(frontend.normalize(written)) == _comparable(spoken), row_id


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        # phone numbers and service lines, digit by digit, 1 as 幺
        ("请拨打13812345678", "请拨打幺三八幺二三四五六七八"),
        ("电话:138-1234-5678", "电话:幺三八幺二三四五六七八"),
        ("请拨打010-87654321", "请拨打零幺零八七六五四三二幺"),
        ("服务热线95588", "服务热线九五五八八"),
        ("请致电10086查询", "请致电幺零零八六查询"),
        ("热线800 810 1234", "热线八零零八幺零幺二三四"),
        # codes, order numbers, card tails
        ("您的验证码为 731150，请勿泄露", "您的验证码为七三幺幺五零,请勿泄露"),
        ("取件码:2046", "取件码:二零四六"),
        ("订单号20231115008812", "订单号二零二三幺幺幺五零零八八幺二"),
        ("尾号1024的信用卡", "尾号幺零二四的信用卡"),
        ("车次G1234", "车次G幺二三四"),
        ("工号3316为您服务", "工号三三幺六为您服务"),
        # a count after a keyword stays a number
        ("密码已输错3次", "密码已输错三次"),
        ("密码为6位数字", "密码为六位数字"),
        # long bare digit strings are identifiers, amounts are not
        ("合同编码2024110501", "合同编码二零二四幺幺零五零幺"),
        ("余额为12345678元", "余额为一千二百三十四万五千六百七十八元"),
        # clock times
        ("下午2点", "下午两点"),
        ("14:05开始", "十四点零五分开始"),
        ("凌晨2:00至6:00", "凌晨两点至六点"),
        ("上午10点半", "上午十点半"),
        ("8点30分", "八点三十分"),
        ("12:00", "十二点"),
        # money, percentages, ranges, dates, units
        ("¥99.90", "九十九点九零元"),
        ("￥1,200", "一千二百元"),
        ("优惠20%", "优惠百分之二十"),
        ("1-3个工作日", "一到三个工作日"),
        ("7~10天", "七到十天"),
        ("2024-06-18到期", "二零二四年六月十八日到期"),
        ("重量5kg", "重量五公斤"),
        ("第1次", "第一次"),
        # ordinals: 二, never 两 (a count), whatever the measure word
        ("第2位客户", "第二位客户"),
        ("您是第2个来电", "您是第二个来电"),
        ("排在第200名", "排在第二百名"),
        ("第2000位会员", "第二千位会员"),
        ("第22期", "第二十二期"),
        ("第2-3个工作日", "第二到三个工作日"),
        # 第N/M: the Nth of M (an instalment plan, a stage), not a fraction.
        ("本期为第1/3期", "本期为第一期,共三期"),
        ("分期还款第2/12期已扣款", "分期还款第二期,共十二期已扣款"),
        ("进度第3/5", "进度第三,共五"),
        ("第1/3期,共3期", "第一期,共三期"),
        # Year ranges: both years digit by digit, whatever joins them.
        ("2025至2026年", "二零二五至二零二六年"),
        ("2019到2021年间", "二零一九到二零二一年间"),
        ("2025~2026赛季", "二零二五到二零二六赛季"),
        ("降幅为-2%", "降幅为负百分之二"),
        # A fraction not after 第 stays a fraction.
        ("占1/3", "占三分之一"),
        ("2个人", "两个人"),
        ("3.5元", "三点五元"),
        ("营业时间8:30-17:30", "营业时间八点三十分至十七点三十分"),
        ("合计¥128，已优惠¥20.5", "合计一百二十八元,已优惠二十点五元"),
        ("消费1,299.00元", "消费一千二百九十九元"),
        ("身份证号码后四位为1234X", "身份证号码后四位为幺二三四X"),
        ("卡号末4位6688", "卡号末四位六六八八"),
        ("发送邮件至service@example.com", "发送邮件至service艾特example点com"),
        # keys on the phone pad
        ("请按#号键", "请按井号键"),
        ("请按*键返回", "请按星键返回"),
        ("按#结束", "按井号结束"),
    ],
)
def test_ivr_readings(frontend: Frontend, written: str, spoken: str) -> None:
    assert frontend.normalize(written) == spoken


def test_letters_are_kept_for_the_letter_reader(frontend: Frontend) -> None:
    assert frontend.normalize("请登录APP查看") == "请登录APP查看"


def test_rules_are_pure_and_leave_plain_chinese_alone() -> None:
    text = "您好,欢迎致电客户服务中心"
    assert apply_ivr_rules(text) == text


def test_read_digits() -> None:
    assert read_digits("1210") == "幺二幺零"
    assert read_digits("1210", yao=False) == "一二一零"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("您好，请按１", "您好,请按1"),
        ("  您好   世界 ", "您好世界"),
        ("ＡＢＣ", "ABC"),
        ("CA 1831", "CA 1831"),
    ],
)
def test_canonical_text_equates_spellings(a: str, b: str) -> None:
    assert canonical_text(a) == canonical_text(b)


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        # powers: the raised digits are an exponent, not more digits of the number
        ("10²元", "十的二次方元"),
        ("2⁵", "二的五次方"),
        ("10⁻³", "十的负三次方"),
        ("10²³个", "十的二十三次方个"),
        ("x²", "x的二次方"),
        ("2ⁿ⁺¹", "二的n加一次方"),
        ("2^10", "二的十次方"),
        ("10^-3", "十的负三次方"),
        # squared and cubed units, written with a raised digit or as one sign
        ("50m²", "五十平方米"),
        ("50㎡", "五十平方米"),
        ("每m²售价", "每平方米售价"),
        ("cm³", "立方厘米"),
        ("12km²", "十二平方公里"),
        ("3㎥", "三立方米"),
        ("9.8m/s²", "九点八米每二次方秒"),
        # subscripts are plain numbers that never run into their neighbours
        ("H₂O", "H二O"),
        ("C₆H₁₂O₆", "C六H十二O六"),
        ("log₂8", "log二八"),
        # vulgar fractions and the fraction slash
        ("½", "二分之一"),
        ("¾杯", "四分之三杯"),
        ("1⁄2", "二分之一"),
        ("3½", "三又二分之一"),
        ("3 1⁄2", "三又二分之一"),
        ("31⁄2", "二分之三十一"),
        ("¹⁄₁₆", "十六分之一"),
        # Roman numerals, one character or several
        ("Ⅻ", "十二"),
        ("第Ⅲ期", "第三期"),
        ("ⅳ", "四"),
        ("ⅯⅯⅩⅩⅣ年", "两千零二十四年"),
        # circled and parenthesized numbers, one number each
        ("步骤①②③", "步骤一二三"),
        ("⑩", "十"),
        # a raised mark after a word is a footnote, not spoken
        ("详见说明¹", "详见说明"),
        # two readings, not a fraction
        ("血压128/82毫米汞柱", "血压一百二十八比八十二毫米汞柱"),
        ("血压：120/80", "血压:一百二十比八十"),
        ("128/82mmHg", "一百二十八比八十二毫米汞柱"),
        ("比分3:2", "比分三比二"),
    ],
)
def test_compatibility_forms_are_read_before_nfkc(frontend: Frontend, written: str, spoken: str) -> None:
    assert frontend.normalize(written) == spoken


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("10²元", "102元"),
        ("2⁵", "25"),
        ("10⁻³", "10-3"),
        ("3½", "31⁄2"),
        ("Ⅻ", "XII"),
        ("①②", "12"),
        ("log₂8", "log28"),
    ],
)
def test_forms_nfkc_would_merge_are_read_apart(frontend: Frontend, a: str, b: str) -> None:
    assert frontend.normalize(a) != frontend.normalize(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("½", "1⁄2"),
        ("½", "1/2"),
        ("H₂O", "H2O"),
        ("１２３", "123"),
        ("第Ⅲ期", "第3期"),
    ],
)
def test_spellings_of_one_reading_agree(frontend: Frontend, a: str, b: str) -> None:
    assert frontend.normalize(a) == frontend.normalize(b)


def test_ordinary_slashes_are_left_to_the_number_reader() -> None:
    assert read_numeric_forms("3/4杯 2/3的用户") == "3/4杯 2/3的用户"
    assert apply_ivr_rules("比例128/82") == "比例128/82"


def test_reading_numeric_forms_is_deterministic_and_idempotent() -> None:
    text = "面积50m²，约10²户，占¾，第Ⅻ期①"
    once = read_numeric_forms(text)
    assert once == read_numeric_forms(text)
    assert read_numeric_forms(once) == once


@pytest.mark.parametrize(
    ("number", "spoken"),
    [
        (0, "零"), (7, "七"), (10, "十"), (12, "十二"), (20, "二十"), (105, "一百零五"),
        (110, "一百一十"), (200, "两百"), (1010, "一千零一十"), (2024, "两千零二十四"),
        (10000, "一万"), (20000, "两万"), (100010, "十万零一十"), (100000001, "一亿零一"),
    ],
)
def test_read_cardinal(number: int, spoken: str) -> None:
    assert read_cardinal(number) == spoken


def test_piece_by_piece_normalization_reads_as_the_whole_text(frontend: Frontend) -> None:
    """The normalizer gives WeTextProcessing one clause at a time (and remembers each), and
    translates clauses of Chinese characters alone with its tables: the reading must be the
    one WeTextProcessing gives the whole text, on every corpus text here."""
    import csv

    import yaml

    from tests.support import REPO

    texts: list[str] = []
    for path, column in ((REPO / "tests" / "data" / "tn_public.tsv", "written"),
                         (REPO / "bench" / "data" / "ivr_public.tsv", "text"),
                         (REPO / "bench" / "data" / "ssml_public.tsv", "said")):
        with path.open(encoding="utf-8") as fh:
            texts += [row[column] for row in csv.DictReader(fh, delimiter="\t")]
    example = yaml.safe_load((REPO / "config" / "phrases.example.yaml").read_text("utf-8"))
    texts += [phrase["text"] for phrase in example["phrases"]]
    joined = ["。".join(texts[i : i + 3]) + "。" for i in range(0, len(texts), 2)]
    texts += joined + [
        "您好！请问有什么可以帮您？验证码483920；请在5分钟内输入。", "第2位。第3位",
        "歡迎致電，請問啊有什麼可以幫您、呃，稍候。", "金额1,000,000元，共3、4、5号，好的啊",
        "“您好”，（请按1）…谢谢！", "比分3:2,中国队胜。", "2024年3月15日,还款100元。",
    ]
    for text in texts:
        assert frontend.normalize(text) == frontend._normalizer.whole(text), text


def test_wetextprocessings_fsts_read_without_pynini_as_its_own_normalizer_reads(
    tmp_path: Path,
) -> None:
    """The FSTs are written once into the cache folder by a child process, as const FSTs;
    read back through pywrapfst, every text reads as WeTextProcessing's normalizer reads it."""
    import random

    from tn.chinese.normalizer import Normalizer

    from synth.frontend.wetext import WeTextNormalizer, fst_paths
    from tests.test_segmenter import corpus

    ours, own = WeTextNormalizer(tmp_path), Normalizer(remove_erhua=False)
    assert all(path.is_file() for path in fst_paths(tmp_path).values())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    assert ours.tagger.fst_type() == ours.verbalizer.fst_type() == "const"
    rng = random.Random(28)
    numbers = [
        lambda: f"{rng.randint(1900, 2099)}年{rng.randint(1, 12)}月{rng.randint(1, 31)}日",
        lambda: f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}",
        lambda: f"{rng.randint(0, 10**rng.randint(1, 12))}",
        lambda: f"{rng.randint(0, 9999)}.{rng.randint(0, 99)}元",
        lambda: f"{rng.randint(0, 100)}%",
        lambda: f"{rng.randint(1, 9)}/{rng.randint(2, 9)}",
        lambda: f"1{rng.randint(3, 9)}{rng.randint(0, 10**9 - 1):09d}",
        lambda: f"{rng.randint(1, 500)}kg",
        lambda: f"{rng.randint(1, 99)}-{rng.randint(1, 99)}",
        lambda: rng.choice(["，", "。", "请拨打", "您的余额为", "第", "号", "ATM", "共", "\\",
                            "[", "]", '"', "啊", "～", "Ｆ", "鬱", "ｍｌ"]),
    ]
    texts = rng.sample(corpus(["您好", "客服", "银行", "转接"]), 500)
    texts += ["".join(rng.choice(numbers)() for _ in range(rng.randint(1, 6))) for _ in range(500)]
    assert [ours.normalize(t) for t in texts] == [own.normalize(t) for t in texts]
    # Read again from the files written above (no child process this time): the same.
    again = WeTextNormalizer(tmp_path)
    assert [again.normalize(t) for t in texts[-50:]] == [own.normalize(t) for t in texts[-50:]]


def test_without_a_folder_to_write_in_the_fsts_load_in_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from synth.frontend.wetext import WeTextNormalizer

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="synth.frontend.wetext"):
        normalizer = WeTextNormalizer(blocked / "cache")
    assert "could not write WeTextProcessing's FSTs" in caplog.text
    assert normalizer.normalize("余额12.5元") == "余额十二点五元"


_PYNINI_PROBE = """
import sys
from pathlib import Path
from synth.frontend.normalize import TextNormalizer
print(TextNormalizer(Path(sys.argv[1])).normalize("2024年3月5日下午3:30，余额12.5元"))
print("pynini" in sys.modules, "_pynini" in sys.modules)
"""


def test_the_serving_process_never_imports_pynini(tmp_path: Path) -> None:
    """pynini (and its libraries) load only in the child that writes the FSTs."""
    import subprocess
    import sys

    from tests.support import REPO

    for _ in range(2):  # writing the files, then reading them
        done = subprocess.run([sys.executable, "-c", _PYNINI_PROBE, str(tmp_path)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "二零二四年三月五日下午三点三十分,余额十二点五元", "False False"]
