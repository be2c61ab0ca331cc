"""What the default voice will say for a text: equal spoken forms exactly when the audio is."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from config import load_settings
from synth.engine import Engine, InvalidInputError
from synth.fastspeech2 import FastSpeech2Engine


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("10²元", "102元"),
        ("2⁵", "25"),
        ("10⁻³", "10-3"),
        ("Ⅻ", "XII"),
        ("3½", "31⁄2"),
        ("您好。再见。", "您好，再见。"),
        ("请按1", "请按2"),
    ],
)
def test_texts_read_differently_have_different_forms(
    engine: FastSpeech2Engine, a: str, b: str
) -> None:
    assert engine.spoken_form(a) != engine.spoken_form(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("½", "1⁄2"),
        ("½杯", "1/2杯"),
        ("１２３", "123"),
        ("第Ⅲ期", "第3期"),
        ("您好，请按1。", "您好,请按1"),
        ("您好   世界", "您好世界"),
        ("“您好”！", "您好。"),
    ],
)
def test_texts_read_alike_have_one_form(engine: FastSpeech2Engine, a: str, b: str) -> None:
    assert engine.spoken_form(a) == engine.spoken_form(b)


def test_equal_forms_give_identical_audio(engine: FastSpeech2Engine) -> None:
    a, b = "第Ⅲ期，共½份", "第3期,共1⁄2份"
    assert engine.spoken_form(a) == engine.spoken_form(b)
    assert np.array_equal(engine.synthesize(a).samples, engine.synthesize(b).samples)


def test_the_form_lists_each_sentences_ids(engine: FastSpeech2Engine) -> None:
    text = "您好。查询余额请按一。"
    sentences = engine.frontend.analyze(text).sentences
    form = engine.spoken_form(text)
    assert form.split("|") == [" ".join(str(i) for i in s.ids) for s in sentences]
    assert len(sentences) == 2


def test_nothing_to_say_is_an_input_error(engine: FastSpeech2Engine) -> None:
    with pytest.raises(InvalidInputError) as err:
        engine.spoken_form("……！？")
    assert err.value.field == "text"


def test_a_repeated_text_is_answered_from_memory(engine: FastSpeech2Engine) -> None:
    text = "您的快递已到达驿站，取件码为三八二一。"
    first = engine.spoken_form(text)
    before = engine.spoken_form_cache_info()
    assert engine.spoken_form(text) == first
    after = engine.spoken_form_cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    assert after.maxsize is not None and after.currsize <= after.maxsize


def test_synthesis_reuses_the_analysis_of_a_spoken_form(engine: FastSpeech2Engine) -> None:
    text = "本次通话可能会被录音，感谢您的理解。"
    engine.spoken_form(text)
    before = engine.frontend.cache_info()
    engine.synthesize(text)
    after = engine.frontend.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


def test_forms_asked_for_from_a_pool_during_synthesis_are_right(engine: FastSpeech2Engine) -> None:
    texts = [f"您的排队号码是{n}号，前面还有{n % 7}位。" for n in range(1000, 1040)]
    failures: list[BaseException] = []

    def synthesize() -> None:
        try:
            engine.synthesize("正在为您转接人工服务，请稍候。" * 3)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    worker = threading.Thread(target=synthesize)
    worker.start()
    with ThreadPoolExecutor(max_workers=4) as pool:
        forms = list(pool.map(engine.spoken_form, texts))
    worker.join()
    assert failures == []
    # Against a fresh analysis of each text, one at a time and past every cache.
    fresh = [engine.frontend._analyze(t).sentences for t in texts]
    assert [f.split("|") for f in forms] == [[" ".join(map(str, s.ids)) for s in u] for u in fresh]
    assert len(set(forms)) == len(texts)


def test_the_engine_protocol_has_spoken_forms(engine: FastSpeech2Engine) -> None:
    assert isinstance(engine, Engine)
    assert callable(Engine.spoken_form)


def test_a_lexicon_edit_rekeys_only_the_prompts_it_reads_differently(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    lexicon = tmp_path / "site.tsv"
    lexicon.write_text("乐途\tle4 tu2\n", encoding="utf-8")
    with_lexicon = FastSpeech2Engine.load(
        load_settings().models_dir, threads=1, lexicon=lexicon
    )
    assert with_lexicon.version == engine.version
    touched, untouched = "欢迎致电乐途客服。", "您好，请稍候。"
    assert with_lexicon.spoken_form(touched) != engine.spoken_form(touched)
    assert with_lexicon.spoken_form(untouched) == engine.spoken_form(untouched)
