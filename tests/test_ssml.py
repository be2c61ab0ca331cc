"""SSML documents: parsed safely, checked by name, bounded, canonical; each element and
each say-as reading becomes what a Chinese voice is asked to say."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from synth.engine import Pcm
from synth.ssml import SsmlError, SsmlSyntaxError, parse_document
from synth.ssml.document import MAX_DEPTH
from synth.ssml.sayas import say_as
from synth.ssml.script import Pause, Segment, build_script
from synth.ssml.speaking import FADE, JOIN_MARGIN, Joiner


def spoken(kind: str, text: str, fmt: str | None = None) -> str:
    """What a say-as span is said as, for a Chinese voice."""
    return "".join(p.text for p in say_as(kind, text, fmt, "zh-CN"))


@pytest.mark.parametrize(("kind", "text", "said"), [
    ("digits", "2025", "二零二五"),
    ("digits", "10086", "一零零八六"),
    ("telephone", "400-811-0510", "四零零，八幺幺，零五幺零"),
    ("telephone", "+86 13800138000", "加八六，幺三八零零幺三八零零零"),
    ("cardinal", "2025", "两千零二十五"),
    ("cardinal", "1,300.5", "一千三百点五"),
    ("cardinal", "-12", "负十二"),
    ("ordinal", "2", "第二"),
    ("ordinal", "第200", "第二百"),
    ("characters", "b8_α", "B 八 下划线 阿尔法"),
    ("date", "2025-03-01", "二零二五年三月一日"),
    ("date", "2025年12月31日", "二零二五年十二月三十一日"),
    ("date", "20250301", "二零二五年三月一日"),
    ("date", "03/15", "三月十五日"),
    ("date", "15/03/2025", "二零二五年三月十五日"),
    ("date", "3月", "三月"),
    ("date", "15日", "十五日"),
    ("date", "12/2025", "二零二五年十二月"),
    ("date", "2024-02-29", "二零二四年二月二十九日"),
    ("time", "14:05", "十四点零五分"),
    ("time", "2:30", "两点三十分"),
    ("time", "8:00:15 pm", "下午八点零分十五秒"),
    ("time", "下午3:15", "下午三点十五分"),
    ("time", "08:00:05", "八点零分五秒"),
    ("time", "12:00pm", "中午十二点"),
    ("time", "12:30am", "凌晨零点三十分"),
    ("time", "24:00", "二十四点"),
    ("ordinal", "第2名", "第二名"),
    ("characters", "ＡＢ$", "A B 美元符号"),
    ("currency", "¥12.50", "十二元五角"),
    ("currency", "12.05元", "十二元零五分"),
    ("currency", "0.35", "三角五分"),
    ("currency", "$3.5", "三点五美元"),
    ("currency", "1,299", "一千二百九十九元"),
    ("currency", "100美元", "一百美元"),
    ("currency", "100港元", "一百港元"),
    ("currency", "100日元", "一百日元"),
    ("currency", "100元整", "一百元"),
    ("currency", "$12.50", "十二点五美元"),
    ("currency", "€20.00", "二十欧元"),
    ("currency", "¥2", "两元"),
    ("currency", "-¥5", "负五元"),
    ("currency", "1.5万元", "一点五万元"),
    ("id", "11010519491231002X", "幺幺零幺零五幺九四九幺二三幺零零二X"),
    ("address", "深南大道10000号3单元304", "深南大道一万号三单元三零四"),
    ("address", "3-2-1201室", "三杠二杠幺二零幺室"),
    ("punctuation", "，。？", "逗号句号问号"),
])
def test_each_reading_says_its_span_as_written_out(kind: str, text: str, said: str) -> None:
    assert spoken(kind, text) == said


def test_a_name_reads_its_surname_as_a_surname() -> None:
    pieces = say_as("name", "单田芳", None, "zh-CN")
    assert (pieces[0].text, pieces[0].syllables) == ("单", ("shan4",))
    assert pieces[1].text == "田芳"
    assert say_as("name", "尉迟恭", None, "zh-CN")[0].syllables == ("yu4", "chi2")
    assert [p.kind for p in say_as("name", "王芳", None, "zh-CN")] == ["written"]
    assert [(p.text, p.syllables) for p in say_as("name", "曾", None, "zh-CN")] == [
        ("曾", ("zeng1",))]


def test_a_voice_of_another_language_gets_digits_spaced_and_the_rest_as_written() -> None:
    assert [p.text for p in say_as("digits", "2025", None, "en-US")] == ["2 0 2 5"]
    assert [p.text for p in say_as("date", "2025-03-01", None, "en-US")] == ["2025-03-01"]


@pytest.mark.parametrize(("kind", "text"), [
    ("cardinal", "many"), ("ordinal", "2.5"), ("date", "yesterday"), ("date", "2025-13-01"),
    ("date", "2025-02-30"), ("time", "25:00"), ("time", "24:30"), ("time", "13:00pm"),
    ("time", "noon"), ("currency", "free"),
])
def test_a_span_a_reading_cannot_read_is_named(kind: str, text: str) -> None:
    with pytest.raises(SsmlError, match=kind):
        say_as(kind, text, None, "zh-CN")


def test_the_script_has_segments_by_voicing_and_pauses_between() -> None:
    script = build_script(
        '<speak>您好<break time="300ms"/>请稍候<prosody rate="slow">正在转接</prosody>谢谢'
        '<emotion category="happy" intensity="0.5">祝您愉快</emotion></speak>', "zh-CN")
    kinds = [type(i).__name__ for i in script.items]
    assert kinds == ["Segment", "Pause", "Segment", "Segment", "Segment", "Segment"]
    assert script.items[1] == Pause(0.3)
    slow = script.items[3]
    assert isinstance(slow, Segment) and slow.voicing.rate == 0.8
    happy = script.items[5]
    assert isinstance(happy, Segment)
    assert (happy.voicing.emotion, happy.voicing.intensity) == ("happy", 0.5)


def test_sub_phoneme_and_sentences_become_pieces() -> None:
    script = build_script(
        '<speak><s>欢迎致电<sub alias="中国移动">CMCC</sub></s>'
        '<s>我在<phoneme alphabet="py" ph="chong2 qing4">重庆</phoneme></s></speak>', "zh-CN")
    (segment,) = script.segments
    described = [(p.text, p.kind, p.syllables) for p in segment.pieces]
    assert described == [
        ("欢迎致电", "written", ()), ("中国移动", "written", ()), ("。", "written", ()),
        ("我在", "written", ()), ("重庆", "reading", ("chong2", "qing4")), ("。", "written", ()),
    ]


def test_prosody_spans_nest_and_multiply() -> None:
    script = build_script('<speak rate="500"><prosody rate="50%" volume="+6dB">慢</prosody>'
                          '</speak>', "zh-CN")
    (segment,) = script.segments
    assert segment.voicing.rate == pytest.approx(1.0)  # Aliyun's 500 is double; 50% halves it
    assert segment.voicing.volume == pytest.approx(1.995, abs=0.01)
    (low,) = build_script('<speak rate="-500" pitch="-2st" volume="100"><prosody pitch="-2st">'
                          '低</prosody></speak>'.replace(' pitch="-2st" volume', " volume"),
                          "zh-CN").segments
    assert low.voicing.rate == pytest.approx(0.5) and low.voicing.volume == pytest.approx(2.0)
    assert low.voicing.pitch == pytest.approx(2 ** (-2 / 12))


@pytest.mark.parametrize(("strength", "seconds"), [
    ("none", 0.0), ("x-weak", 0.1), ("weak", 0.2), ("medium", 0.4), ("strong", 0.7),
    ("x-strong", 1.2),
])
def test_break_strengths(strength: str, seconds: float) -> None:
    script = build_script(f'<speak>一<break strength="{strength}"/>二</speak>', "zh-CN")
    assert script.items[1] == Pause(seconds)


def test_a_break_with_no_attributes_is_medium_and_time_wins_over_strength() -> None:
    assert build_script("<speak>一<break/>二</speak>", "zh-CN").items[1] == Pause(0.4)
    script = build_script('<speak>一<break time="1.5s" strength="weak"/>二</speak>', "zh-CN")
    assert script.items[1] == Pause(1.5)


def test_paragraphs_pause_between_them_wherever_they_stand() -> None:
    for document in ("<speak><prosody rate='slow'><p>甲</p></prosody><p>乙</p></speak>",
                     "<speak><p>甲</p>乙</speak>", "<speak><p>甲</p><p>乙</p></speak>"):
        pauses = [i for i in build_script(document, "zh-CN").items if isinstance(i, Pause)]
        assert pauses == [Pause(0.4)], document
    assert not [i for i in build_script("<speak><p>甲</p></speak>", "zh-CN").items
                if isinstance(i, Pause)]


def test_the_canonical_form_is_one_for_white_space_inside_inline_elements() -> None:
    one = parse_document('<speak>\n <prosody rate="fast">\n 你好\n </prosody>\n'
                         " 再见 <w> 世界 </w></speak>")
    two = parse_document('<speak><prosody rate="fast">你好</prosody>再见<w>世界</w></speak>')
    assert one.canonical == two.canonical
    assert parse_document(one.canonical).canonical == one.canonical


def test_what_a_document_says_is_counted_as_said() -> None:
    """Indentation is not said; a sub's alias is, instead of its text; paragraph pauses
    count towards the total pause."""
    indented = "<speak>\n" + "        <s>好</s>\n" * 120 + "</speak>"
    assert parse_document(indented).spoken_chars == 120
    assert parse_document('<speak><sub alias="世界贸易组织">WTO</sub></speak>').spoken_chars == 6
    with pytest.raises(SsmlError, match="add up to"):
        parse_document("<speak>" + "<p></p>" * 200 + "<p>好</p></speak>")


def test_a_lone_surrogate_is_a_syntax_error_not_a_crash() -> None:
    for document in ("<speak>\ud800</speak>", '<speak rate="\ud800">好</speak>'):
        with pytest.raises(SsmlSyntaxError, match="not Unicode"):
            parse_document(document)


def test_the_canonical_form_ignores_attribute_order_white_space_and_the_header() -> None:
    one = parse_document('<speak><prosody rate="slow" volume="loud">慢</prosody>'
                         '<break time="1s"/>好</speak>')
    two = parse_document('<?xml version="1.0" encoding="UTF-8"?>\n'
                         '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" '
                         'xml:lang="zh-CN">\n  <prosody volume="loud"   rate="slow">慢</prosody>\n'
                         '  <break   time="1s" />\n  好\n</speak>')
    assert one.canonical == two.canonical
    different = parse_document('<speak><prosody rate="fast" volume="loud">慢</prosody>'
                               '<break time="1s"/>好</speak>')
    assert different.canonical != one.canonical


@pytest.mark.parametrize(("document", "named"), [
    ("<speak><voice name='x'>你好</voice></speak>", "<voice>"),
    ("<speak><audio src='http://x/a.wav'/></speak>", "<audio>"),
    ("<speak bgm='http://x/a.wav'>你好</speak>", "'bgm'"),
    ("<speak><break time='1s' size='3'/></speak>", "'size'"),
    ("<speak><prosody speed='2'>你好</prosody></speak>", "'speed'"),
    ("<speak><say-as>123</say-as></speak>", "interpret-as"),
    ("<speak><say-as interpret-as='roman'>XII</say-as></speak>", "roman"),
    ("<speak><sub>WTO</sub></speak>", "alias"),
    ("<speak><phoneme alphabet='ipa' ph='tʃ'>重</phoneme></speak>", "alphabet"),
    ("<speak><phoneme ph='chong qing'>重庆</phoneme></speak>", "ph"),
    ("<speak><phoneme ph='chong2'>重庆</phoneme></speak>", "1 syllables for 2 characters"),
    ("<speak><break time='fast'/></speak>", "break time"),
    ("<speak><break strength='huge'/></speak>", "strength"),
    ("<speak><prosody rate='warp'>你好</prosody></speak>", "prosody rate"),
    ("<speak><prosody rate='1000%'>你好</prosody></speak>", "out of range"),
    ("<speak><prosody pitch='+50Hz'>你好</prosody></speak>", "prosody pitch"),
    ("<speak rate='900'>你好</speak>", "speak rate"),
    ("<speak><emotion category='happy' intensity='9'>你好</emotion></speak>", "intensity"),
    ("<speak><emotion>你好</emotion></speak>", "category"),
    ("<speak><say-as interpret-as='digits'><s>1</s></say-as></speak>", "text only"),
    ("<speak><break>停</break></speak>", "<break> takes no text"),
    ("<p>你好</p>", "root element"),
    ("<speak><x:y xmlns:x='urn:other'>你好</x:y></speak>", "unknown element"),
])
def test_what_cannot_be_spoken_is_refused_by_name(document: str, named: str) -> None:
    with pytest.raises(SsmlError, match="SSML") as caught:
        parse_document(document)
    assert named in str(caught.value) and not isinstance(caught.value, SsmlSyntaxError)
    assert caught.value.status == 422 and caught.value.field == "text"


@pytest.mark.parametrize(("document", "where"), [
    ("<speak>你好<break time='1s'></speak>", r"mismatched tag\) at line 1, column \d+"),
    ("<speak>\n你好\n<s>再见</speak>", r"at line 3, column \d+"),
    ("<speak>a & b</speak>", r"at line 1, column \d+"),
    ("<speak>unterminated", r"at line 1, column \d+"),
])
def test_malformed_xml_is_refused_with_its_line_and_column(document: str, where: str) -> None:
    with pytest.raises(SsmlSyntaxError, match=where) as caught:
        parse_document(document)
    assert caught.value.status == 400


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
              for i in range(1, 10))
    + "]><speak>&lol9;</speak>"
)
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY x SYSTEM '
                   '"file:///etc/passwd">]><speak>&x;</speak>')
EXTERNAL_DTD = '<!DOCTYPE speak SYSTEM "http://example.com/evil.dtd"><speak>你好</speak>'


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD],
                         ids=["billion-laughs", "external-entity", "external-dtd"])
def test_hostile_documents_are_refused_before_any_entity_is_expanded(document: str) -> None:
    with pytest.raises(SsmlSyntaxError, match="DTD") as caught:
        parse_document(document)
    assert caught.value.status == 400


def test_deep_nesting_is_refused_without_recursion() -> None:
    deep = "<speak>" + "<prosody>" * 10_000 + "深" + "</prosody>" * 10_000 + "</speak>"
    with pytest.raises(SsmlError, match=f"deeper than {MAX_DEPTH}"):
        parse_document(deep)


def test_a_huge_break_and_too_much_pause_in_all_are_refused() -> None:
    with pytest.raises(SsmlError, match="longer than 10 s"):
        parse_document('<speak>一<break time="1000000000s"/>二</speak>')
    with pytest.raises(SsmlError, match="add up to"):
        parse_document("<speak>" + '一<break time="10s"/>' * 7 + "</speak>")


def tone(seconds: float, rate: int = 8000, *, silence: float = 0.1) -> Pcm:
    """A 440 Hz tone between two stretches of silence, as a voice's segment is."""
    t = np.arange(int(seconds * rate)) / rate
    body = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    gap = np.zeros(int(silence * rate), dtype=np.int16)
    return Pcm(np.concatenate([gap, body, gap]), rate)


def joined(items: list[Pcm | float], chunk: int | None) -> npt.NDArray[np.int16]:
    """Segments (Pcm) and pauses (seconds) through a Joiner, fed in chunks of `chunk`."""
    joiner = Joiner(8000)
    out = []
    for item in items:
        if isinstance(item, float):
            joiner.pause(item)
            continue
        joiner.start_segment()
        size = chunk or len(item.samples)
        for at in range(0, len(item.samples), size):
            ready = joiner.feed(Pcm(item.samples[at : at + size], 8000))
            if ready is not None:
                out.append(ready.samples)
    last = joiner.finish()
    if last is not None:
        out.append(last.samples)
    return np.concatenate(out)


def test_joins_are_the_same_however_the_segments_are_chunked() -> None:
    items: list[Pcm | float] = [tone(0.3), tone(0.05, silence=0.0), 0.25, tone(0.2), tone(0.4)]
    whole = joined(items, None)
    for chunk in (7, 64, 1000):
        assert np.array_equal(joined(items, chunk), whole), chunk


def test_a_join_keeps_only_a_margin_of_silence_and_a_pause_its_length() -> None:
    rate, margin = 8000, int(JOIN_MARGIN * 8000)
    first, second = tone(0.3), tone(0.3)
    plain = joined([first, second], None)
    paused = joined([first, 0.5, second], None)
    assert len(paused) - len(plain) == int(0.5 * rate) + int(FADE * rate)  # no crossfade overlap
    # Between the tones: the two margins (and the pause).
    loud = np.flatnonzero(np.abs(paused.astype(np.int32)) > 0)
    gap = np.diff(loud).max() - 1
    assert abs(gap - (int(0.5 * rate) + 2 * margin)) <= 2


def test_a_pause_before_a_silent_first_segment_is_kept() -> None:
    silent = Pcm(np.zeros(800, dtype=np.int16), 8000)
    out = joined([2.0, silent, tone(0.2, silence=0.0)], None)
    first_sound = int(np.flatnonzero(np.abs(out.astype(np.int32)) > 0)[0])
    assert first_sound >= int(2.0 * 8000)
