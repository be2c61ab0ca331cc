"""The default engine, synthesizing for real."""

from __future__ import annotations

import numpy as np
import pytest

from synth.engine import Engine, InvalidInputError, Pcm, Prosody
from synth.fastspeech2 import FastSpeech2Engine


def rms(pcm: Pcm) -> float:
    return float(np.sqrt(np.mean(pcm.samples.astype(np.float64) ** 2)))


def test_engine_follows_the_protocol(engine: FastSpeech2Engine) -> None:
    assert isinstance(engine, Engine)
    assert engine.name == "fastspeech2"
    assert engine.sample_rate == 24000
    assert engine.voices()[0].name == "baker"
    assert set(engine.voices()[0].styles) >= {"neutral", "cheerful", "calm", "serious", "apologetic"}
    assert set(engine.setting_ranges()) == {"speed", "pitch", "volume"}


def test_synthesis_has_plausible_length_and_is_not_silent(engine: FastSpeech2Engine) -> None:
    text = "您好，欢迎致电客户服务中心。"  # 12 syllables
    pcm = engine.synthesize(text)
    assert pcm.sample_rate == 24000
    assert pcm.samples.dtype == np.int16
    assert 1.5 < pcm.duration < 6.0
    assert rms(pcm) > 500  # clearly audible, not silence or noise floor
    assert np.abs(pcm.samples).max() < 32767  # not clipped flat


def test_synthesis_is_deterministic(engine: FastSpeech2Engine) -> None:
    a = engine.synthesize("查询账户余额请按一")
    b = engine.synthesize("查询账户余额请按一")
    assert np.array_equal(a.samples, b.samples)


def test_stream_yields_sentences_that_join_to_the_whole(engine: FastSpeech2Engine) -> None:
    text = "您好。查询余额请按一。转人工服务请按零。"
    chunks = list(engine.stream(text))
    assert len(chunks) == 3
    whole = engine.synthesize(text)
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), whole.samples)


def test_long_text_synthesizes_in_full(engine: FastSpeech2Engine) -> None:
    pcm = engine.synthesize("请您耐心等待" * 25)  # 150 syllables with no punctuation
    assert pcm.duration > 150 * 0.12


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"style": "furious"}, "style"),
        ({"voice": "nobody"}, "voice"),
        ({"prosody": Prosody(speed=5.0)}, "speed"),
        ({"prosody": Prosody(pitch=0.1)}, "pitch"),
        ({"prosody": Prosody(volume=9.0)}, "volume"),
    ],
)
def test_bad_settings_name_the_field(engine: FastSpeech2Engine, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        engine.synthesize("您好", **kwargs)
    assert err.value.field == field


def test_text_with_nothing_to_say_is_an_input_error(engine: FastSpeech2Engine) -> None:
    with pytest.raises(InvalidInputError) as err:
        engine.synthesize("……！？")
    assert err.value.field == "text"


def test_unreadable_characters_are_reported_with_the_audio(engine: FastSpeech2Engine) -> None:
    pcm = engine.synthesize("您好😀")
    assert pcm.unread == ("😀",)
    assert pcm.duration > 0.3


def test_parallel_vocoding_matches_a_single_run_exactly(engine: FastSpeech2Engine) -> None:
    sentence = max(engine.frontend.analyze(
        "您的本月话费账单为一百二十八点五零元，请于二零二四年三月十五日前缴清，谢谢配合。"
    ).sentences, key=lambda s: len(s.ids))
    mel = engine._mel(sentence.ids, Prosody())
    assert mel.shape[1] > 300  # long enough to be split into chunks
    single = engine._vocoder.run(None, {"mels": mel})[0][0, :, 0]
    assert np.array_equal(engine._vocode(mel), single)
    head = engine._vocode_span(mel, 0, 64)
    assert np.array_equal(np.concatenate([head, engine._vocode(mel, 64)]), single)


def test_vocoder_runs_are_bounded_and_still_match_a_single_run(
    engine: FastSpeech2Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import synth.fastspeech2 as fastspeech2

    sentence = max(engine.frontend.analyze(
        "您的本月话费账单为一百二十八点五零元，请于二零二四年三月十五日前缴清，谢谢配合。"
    ).sentences, key=lambda s: len(s.ids))
    mel = engine._mel(sentence.ids, Prosody())
    single = engine._vocoder.run(None, {"mels": mel})[0][0, :, 0]
    runs: list[int] = []
    span = engine._vocode_span
    monkeypatch.setattr(engine, "_vocode_span", lambda m, a, b: runs.append(b - a) or span(m, a, b))
    monkeypatch.setattr(fastspeech2, "VOCODER_MAX_CHUNK", 100)
    assert np.array_equal(engine._vocode(mel), single)
    assert len(runs) == -(-mel.shape[1] // 100) >= 3 and max(runs) <= 100


def test_the_first_call_streams_its_opening_first(engine: FastSpeech2Engine) -> None:
    from synth.fastspeech2 import HEAD_FRAMES, HOP

    text = "您的本月话费账单为一百二十八点五零元，请于二零二四年三月十五日前缴清。谢谢。"
    calls = engine.frontend.analyze(text).sentences
    assert len(calls) == 2  # one model call per sentence
    chunks = list(engine.stream(text))
    assert len(chunks) == len(calls) + 1  # the first call's opening comes alone
    assert abs(chunks[0].duration - HEAD_FRAMES * HOP / 24000) < 1e-9
    joined = np.concatenate([c.samples for c in chunks])
    assert np.array_equal(joined, engine.synthesize(text).samples)


def test_workers_share_one_loaded_default_voice(engine: FastSpeech2Engine) -> None:
    import dataclasses

    from config import Settings, load_settings
    from synth.engine import takes_concurrent_calls
    from synth.registry import lanes_for, load_engines

    assert takes_concurrent_calls(engine)
    assert lanes_for(Settings(workers=0), engine) == Settings().resolved_threads() >= 1
    assert lanes_for(Settings(workers=0, threads=1), engine) == 1  # one thread allowed: one lane
    assert lanes_for(Settings(workers=3), engine) == 3
    # However many workers, the voice is loaded once.
    settings = dataclasses.replace(load_settings(), workers=2)
    (loaded,) = load_engines(settings)
    assert lanes_for(settings, loaded) == 2

    class OneAtATime:
        name = "single"

    assert lanes_for(Settings(workers=0), OneAtATime()) == 1  # type: ignore[arg-type]
    assert lanes_for(Settings(workers=3), OneAtATime()) == 1  # type: ignore[arg-type]


def test_concurrent_calls_give_the_samples_of_one_call_at_a_time(engine: FastSpeech2Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = ["您好，欢迎致电客户服务中心，查询话费请按一，办理业务请按二。",
             "您的本月话费账单为一百二十八点五零元，请于二零二四年三月十五日前缴清。",
             "请稍候，正在为您转接人工客服。", "感谢您的来电，再见。"] * 2
    alone = [engine.synthesize(t).samples for t in texts]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda t: engine.synthesize(t).samples, texts))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))

