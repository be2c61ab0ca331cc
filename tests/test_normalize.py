"""Text normalization: what the voice is asked to say for IVR text."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from synth.frontend import Frontend, apply_ivr_rules, canonical_text, read_digits

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
