"""The optional ModelScope engine (synth/sambert/), through the real modelscope library.

No Sambert-HifiGAN weights can be had offline, so a tiny model type and pipeline type are
registered with ModelScope here for the text-to-speech task: the pipeline answers WAV bytes of
a tone, 0.2 s per character, and records the voice it was asked for. These tests therefore
check the adapter (its loading path through `modelscope.pipelines.pipeline`, the handling of
the model's configuration, the decoding of the pipeline's output, the gateway wiring), not
Sambert itself. `test_real_sambert` runs a real model when SAMBERT_TEST_MODEL_DIR points at one.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import ConfigError, Settings, load_settings
from config.settings import ENGINES
from gateway import create_app
from synth.engine import Engine, InvalidInputError, Prosody
from synth.fastspeech2 import FastSpeech2Engine
from synth.registry import BUILDERS, load_engines
from synth.sambert import EngineUnavailableError, SambertEngine, model_fingerprint
from tests.conftest import REPO

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

TINY_PIPELINE = "huiyin-test-tone-tts"
TINY_MODEL = "huiyin-test-tone"
SECONDS_PER_CHAR = 0.2
AMPLITUDE = 0.3
PAUSE = 0.12
# (text, voice) of every pipeline call, in order.
CALLS: list[tuple[str, str | None]] = []


def spoken_chars(text: str) -> int:
    return sum(ch.isalnum() for ch in re.sub(r"<[^>]*>", "", text))


@pytest.fixture(scope="session")
def tiny_types() -> None:
    """Register the tiny model and pipeline types with ModelScope (offline env set first)."""
    from synth.sambert.offline import go_offline

    go_offline()
    pytest.importorskip("modelscope", reason="the modelscope extra is not installed")
    from modelscope.models.base import Model
    from modelscope.models.builder import MODELS
    from modelscope.outputs import OutputKeys
    from modelscope.pipelines.base import Pipeline
    from modelscope.pipelines.builder import PIPELINES
    from modelscope.utils.constant import Tasks

    @MODELS.register_module(Tasks.text_to_speech, module_name=TINY_MODEL, force=True)
    class ToneModel(Model):  # type: ignore[misc]
        def __init__(self, model_dir: str, *args: Any, **kwargs: Any) -> None:
            super().__init__(model_dir, *args, **kwargs)
            # As Sambert: the configuration's model section arrives as keyword arguments.
            self.rate = int(kwargs.get("tone_rate", kwargs.get("sample_rate", 16000)))

        def forward(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return {}

    @PIPELINES.register_module(Tasks.text_to_speech, module_name=TINY_PIPELINE, force=True)
    class TonePipeline(Pipeline):  # type: ignore[misc]
        def _sanitize_parameters(self, **params: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            return {}, params, {}

        def preprocess(self, inputs: Any, **params: Any) -> Any:
            return inputs

        def forward(self, text: str, **params: Any) -> dict[str, bytes]:
            CALLS.append((text, params.get("voice")))
            rate = self.model.rate
            t = np.arange(int(round(spoken_chars(text) * SECONDS_PER_CHAR * rate))) / rate
            tone = (AMPLITUDE * np.sin(2 * np.pi * 440.0 * t) * 32767).astype(np.int16)
            buf = io.BytesIO()
            sf.write(buf, tone, rate, format="WAV", subtype="PCM_16")
            return {OutputKeys.OUTPUT_WAV: buf.getvalue()}

        def postprocess(self, inputs: Any, **params: Any) -> Any:
            return inputs


def make_model(
    root: Path, speakers: tuple[str, ...] = ("zhitian_emo", "zhiyan_emo"),
    emotions: Any = None, *, rate: int | None = 16000, listing: bool = True,
    model_extra: dict[str, Any] | None = None, pipeline_type: str = TINY_PIPELINE,
) -> Path:
    """A model folder in ModelScope's Sambert layout, for the tiny types."""
    root.mkdir(parents=True, exist_ok=True)
    model: dict[str, Any] = {"type": TINY_MODEL, "lang_type": "PinYin", **(model_extra or {})}
    if rate is not None:
        model["sample_rate"] = rate
    if not listing:
        model["voices"] = list(speakers)
        if emotions is not None:
            model["emotions"] = emotions
    config = {"framework": "pytorch", "task": "text-to-speech", "model": model,
              "pipeline": {"type": pipeline_type}}
    (root / "configuration.json").write_text(json.dumps(config), encoding="utf-8")
    if listing:
        voices: dict[str, Any] = {"voices": list(speakers)}
        if emotions is not None:
            voices["emotions"] = emotions
        (root / "voices").mkdir(exist_ok=True)
        (root / "voices" / "voices.json").write_text(json.dumps(voices), encoding="utf-8")
        for speaker in speakers:
            for part in ("am", "voc"):
                ckpt = root / "voices" / speaker / part / "ckpt"
                ckpt.mkdir(parents=True, exist_ok=True)
                (ckpt.parent / "config.yaml").write_text(f"model: {part}\n", encoding="utf-8")
            # A weight file above the content-hash limit, one below it.
            (root / "voices" / speaker / "voc" / "ckpt" / "checkpoint_0.pth").write_bytes(
                b"\0" * (3 << 19)
            )
            (root / "voices" / speaker / "am" / "ckpt" / "checkpoint_0.pth").write_bytes(b"am-weights")
    return root


@pytest.fixture
def calls(tiny_types: None) -> Iterator[list[tuple[str, str | None]]]:
    CALLS.clear()
    yield CALLS
    CALLS.clear()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


EMOTIONS = {"zhitian_emo": ["neutral", "happy", "sad", "angry"], "zhiyan_emo": ["happy"]}


@pytest.fixture
def tone(tmp_path: Path, calls: list[tuple[str, str | None]]) -> SambertEngine:
    return SambertEngine(make_model(tmp_path / "model", emotions=EMOTIONS))


# --- loading ---------------------------------------------------------------------------


def test_loads_through_modelscope_pipeline_offline(
    tmp_path: Path, calls: list[tuple[str, str | None]], no_network: None
) -> None:
    from modelscope.pipelines.builder import PIPELINES
    from modelscope.utils.constant import Tasks

    engine = SambertEngine(make_model(tmp_path / "model"))
    assert isinstance(engine, Engine)
    assert os.environ["MODELSCOPE_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    # Built by modelscope's pipeline() from the registered type named in configuration.json.
    registered = PIPELINES.get(TINY_PIPELINE, group_key=Tasks.text_to_speech)
    assert type(engine._pipeline) is registered
    assert engine.model_dir == (tmp_path / "model").resolve()
    # The warm-up said something once, with the first voice, and gave the rate.
    assert calls == [("您好。", "zhitian_emo")]
    assert engine.sample_rate == 16000
    assert engine.name == "sambert"


def test_voices_and_emotions_come_from_the_configuration(tone: SambertEngine) -> None:
    voices = {v.name: v for v in tone.voices()}
    assert list(voices) == ["zhitian_emo", "zhiyan_emo"]
    assert voices["zhitian_emo"].styles == ("neutral", "happy", "sad", "angry")
    assert voices["zhiyan_emo"].styles == ("neutral", "happy")
    assert voices["zhitian_emo"].language == "zh-CN"
    assert "baker" not in voices


def test_speakers_and_shared_emotions_from_configuration_json(
    tmp_path: Path, calls: list[tuple[str, str | None]]
) -> None:
    engine = SambertEngine(make_model(
        tmp_path / "model", ("aixia", "aijia"), ["happy", "fear"], listing=False
    ))
    assert [(v.name, v.styles) for v in engine.voices()] == [
        ("aixia", ("neutral", "happy", "fear")), ("aijia", ("neutral", "happy", "fear")),
    ]


def test_model_without_emotions_offers_neutral_only(
    tmp_path: Path, calls: list[tuple[str, str | None]]
) -> None:
    engine = SambertEngine(make_model(tmp_path / "model", ("zhida",)))
    assert [(v.name, v.styles) for v in engine.voices()] == [("zhida", ("neutral",))]


# --- synthesis ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 24000])
def test_synthesis_decodes_int16_at_the_models_rate(
    tmp_path: Path, calls: list[tuple[str, str | None]], rate: int
) -> None:
    engine = SambertEngine(make_model(tmp_path / "model", rate=rate))
    assert engine.sample_rate == rate
    pcm = engine.synthesize("您好！请稍候。")
    assert pcm.samples.dtype == np.int16 and pcm.sample_rate == rate
    # Two sentences, 2 and 3 characters, a pause between them.
    expected = round(2 * SECONDS_PER_CHAR * rate) + int(PAUSE * rate) + round(3 * SECONDS_PER_CHAR * rate)
    assert len(pcm.samples) == expected
    assert abs(int(np.abs(pcm.samples).max()) - AMPLITUDE * 32767) < 200
    chunks = list(engine.stream("您好！请稍候。"))
    assert len(chunks) == 2
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), pcm.samples)


def test_rate_is_read_from_the_audio_when_the_configuration_gives_none(
    tmp_path: Path, calls: list[tuple[str, str | None]]
) -> None:
    engine = SambertEngine(make_model(tmp_path / "model", rate=None, model_extra={"tone_rate": 22050}))
    assert engine.sample_rate == 22050
    assert engine.synthesize("好").sample_rate == 22050


def test_declared_rate_that_the_model_does_not_write_fails_at_startup(
    tmp_path: Path, calls: list[tuple[str, str | None]]
) -> None:
    model = make_model(tmp_path / "model", rate=16000, model_extra={"tone_rate": 22050})
    with pytest.raises(EngineUnavailableError, match="declares sample_rate 16000 but the model writes 22050 Hz"):
        SambertEngine(model)


def test_text_is_normalized_like_the_default_voice(tone: SambertEngine,
                                                    calls: list[tuple[str, str | None]]) -> None:
    tone.synthesize("请拨打95588")
    # IVR rules: a service number is read digit by digit.
    assert calls[-1] == ("请拨打九五五八八", "zhitian_emo")
    # Nothing of the text becomes markup.
    tone.synthesize("<speak>您好</speak>")
    assert "<" not in calls[-1][0]


def test_requested_voice_and_emotion_reach_the_pipeline(
    tone: SambertEngine, calls: list[tuple[str, str | None]]
) -> None:
    tone.synthesize("您好。", voice="zhiyan_emo")
    assert calls[-1] == ("您好.", "zhiyan_emo")
    tone.synthesize("您好。", voice="zhitian_emo", style="happy")
    assert calls[-1] == (
        '<speak><emotion category="happy" intensity="1.0">您好.</emotion></speak>', "zhitian_emo"
    )
    tone.synthesize("您好。")  # no voice: the first speaker, neutral is plain text
    assert calls[-1] == ("您好.", "zhitian_emo")


def test_an_ssml_emotion_reaches_the_pipeline_as_the_models_own(
    tone: SambertEngine, calls: list[tuple[str, str | None]]
) -> None:
    from synth.ssml import parse_document, speaking

    document = parse_document('<speak>您好。<emotion category="sad">很抱歉。</emotion></speak>')
    speaking.synthesize(tone, document.canonical, voice="zhitian_emo", style="neutral",
                        prosody=Prosody())
    assert calls[-2:] == [
        ("您好.", "zhitian_emo"),
        ('<speak><emotion category="sad" intensity="1.0">很抱歉.</emotion></speak>', "zhitian_emo"),
    ]
    # An emotion the voice lacks, with no preset near it either, is refused by name.
    with pytest.raises(InvalidInputError, match="furious"):
        speaking.spoken_form(tone, parse_document(
            '<speak><emotion category="furious">你好</emotion></speak>').canonical, "zhitian_emo")


def test_bad_input_names_its_field(tone: SambertEngine) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"voice": "baker"}, "voice"),
        ({"voice": "zhiyan_emo", "style": "sad"}, "style"),
        ({"prosody": Prosody(speed=1.5)}, "speed"),
        ({"prosody": Prosody(pitch=0.9)}, "pitch"),
        ({"prosody": Prosody(volume=3.0)}, "volume"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidInputError) as caught:
            tone.synthesize("您好", **kwargs)
        assert caught.value.field == field
    with pytest.raises(InvalidInputError) as caught:
        tone.synthesize("。。。😀")
    assert caught.value.field == "text"


def test_ranges_are_honest_and_volume_is_a_gain(tone: SambertEngine) -> None:
    ranges = tone.setting_ranges()
    assert (ranges["speed"].minimum, ranges["speed"].maximum) == (1.0, 1.0)
    assert (ranges["pitch"].minimum, ranges["pitch"].maximum) == (1.0, 1.0)
    plain = tone.synthesize("您好")
    loud = tone.synthesize("您好", prosody=Prosody(volume=2.0))
    assert len(loud.samples) == len(plain.samples)
    ratio = np.abs(loud.samples.astype(float)).max() / np.abs(plain.samples.astype(float)).max()
    assert ratio == pytest.approx(2.0, rel=1e-3)


# --- version -------------------------------------------------------------------------------


def test_version_follows_the_model_files(tmp_path: Path, calls: list[tuple[str, str | None]]) -> None:
    model = make_model(tmp_path / "model")
    first = SambertEngine(model).version
    assert SambertEngine(model).version == first  # same files, same version
    # Hub bookkeeping and a folder unpacked from a zip beside it do not count.
    (model / ".msc").write_text("x", encoding="utf-8")
    (model / "resource.zip").write_bytes(b"zip")
    with_zip = SambertEngine(model).version
    (model / "resource").mkdir()
    (model / "resource" / "unpacked.txt").write_text("x", encoding="utf-8")
    assert SambertEngine(model).version == with_zip != first
    # A small file changes by content.
    (model / "voices" / "zhiyan_emo" / "am" / "config.yaml").write_text("model: am2\n", encoding="utf-8")
    edited = SambertEngine(model).version
    assert edited != with_zip
    # A large weight file changes by size or modification time.
    weights = model / "voices" / "zhiyan_emo" / "voc" / "ckpt" / "checkpoint_0.pth"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = SambertEngine(model).version
    assert touched != edited
    assert model_fingerprint(model) != model_fingerprint(make_model(tmp_path / "other"))


# --- what is missing fails at construction -------------------------------------------------


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match=r"model folder .*nowhere does not exist"):
        SambertEngine(tmp_path / "nowhere")


def test_missing_configuration_json_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(EngineUnavailableError, match="has no configuration.json"):
        SambertEngine(tmp_path / "model")


def test_configuration_problems_name_the_file_and_field(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    config = json.loads((model / "configuration.json").read_text(encoding="utf-8"))
    del config["pipeline"]
    (model / "configuration.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(EngineUnavailableError, match=r"configuration.json: 'pipeline.type' is missing"):
        SambertEngine(model)
    model = make_model(tmp_path / "listed", ("zhitian_emo",))
    (model / "voices" / "voices.json").write_text('{"voices": ["zhitian_emo", "zhida"]}', encoding="utf-8")
    with pytest.raises(EngineUnavailableError, match=r"speaker 'zhida' but its folder voices/zhida/ is missing"):
        SambertEngine(model)


def test_missing_packages_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(tmp_path / "model")
    for name in ("modelscope", "modelscope.pipelines", "modelscope.hub.snapshot_download"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(EngineUnavailableError, match=re.escape("pip install '.[modelscope]'")):
        SambertEngine(model)
    with pytest.raises(EngineUnavailableError, match=re.escape("pip install '.[modelscope]'")):
        SambertEngine.from_cache("iic/speech_tiny")


def test_incomplete_sambert_model_lists_the_missing_files(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", ("zhitian_emo",), pipeline_type="sambert-hifigan-tts")
    (model / "voices" / "zhitian_emo" / "am" / "ckpt" / "checkpoint_0.pth").unlink()
    (model / "voices" / "zhitian_emo" / "voc" / "config.yaml").unlink()
    with pytest.raises(EngineUnavailableError) as caught:
        SambertEngine(model)
    message = str(caught.value)
    assert "resource.zip" in message
    assert "voices/zhitian_emo/voc/config.yaml" in message
    assert "voices/zhitian_emo/am/ckpt/checkpoint_*.pth" in message


@pytest.mark.skipif(
    all(__import__("importlib").util.find_spec(m) for m in ("kantts", "ttsfrd")),
    reason="the Sambert frontend packages are installed here",
)
def test_sambert_frontend_packages_are_named_when_absent(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", ("zhitian_emo",), pipeline_type="sambert-hifigan-tts")
    (model / "resource.zip").write_bytes(b"zip")
    with pytest.raises(EngineUnavailableError, match=r"needs the Python packages .*kantts.*ttsfrd"):
        SambertEngine(model)


SAMBERT_MODULES = ("modelscope.models.audio.tts.sambert_hifi", "modelscope.models.audio.tts.voice")
# What ModelScope's Sambert module imports from the vendor's kantts (not on PyPI) and from
# matplotlib, none of it used before the frontend step these stand-ins let it reach.
KANTTS_NAMES = {
    "kantts.datasets.dataset": ("get_am_datasets", "get_voc_datasets"),
    "kantts.models": ("model_builder",),
    "kantts.train.loss": ("criterion_builder",),
    "kantts.train.trainer": ("GAN_Trainer", "Sambert_Trainer", "distributed_init"),
}


class _LinguisticUnit:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def get_unit_size(self) -> dict[str, int]:
        return {}


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None,
    reason="ModelScope's Sambert module imports torch, whose CPU build is installed here only "
           "for Python 3.11 (the modelscope extra)",
)
def test_modelscopes_sambert_model_stops_at_its_frontend_on_this_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_types: None,
) -> None:
    import types

    model = make_model(tmp_path / "model", ("zhitian_emo",), pipeline_type="sambert-hifigan-tts",
                       model_extra={"type": "sambert-hifigan"})
    am = {"linguistic_unit": {"language": "PinYin", "has_mask": True},
          "Model": {"KanTtsSAMBERT": {"params": {}}}}
    (model / "voices" / "zhitian_emo" / "am" / "config.yaml").write_text(json.dumps(am), "utf-8")
    (model / "resource.zip").write_bytes(b"")
    stubs = {name: types.ModuleType(name) for name in
             ("matplotlib", "matplotlib.pyplot", "kantts", "kantts.utils.ling_unit.ling_unit",
              *KANTTS_NAMES)}
    for name, attrs in KANTTS_NAMES.items():
        for attr in attrs:
            setattr(stubs[name], attr, None)
    stubs["kantts.utils.ling_unit.ling_unit"].KanTtsLinguisticUnit = _LinguisticUnit  # type: ignore[attr-defined]
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in SAMBERT_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "ttsfrd", None)  # absent, whatever this machine has
    try:
        from modelscope.models.audio.tts.sambert_hifi import SambertHifigan

        config = json.loads((model / "configuration.json").read_text("utf-8"))["model"]
        with pytest.raises(ImportError) as caught:
            SambertHifigan(str(model), **config)
    finally:
        for name in SAMBERT_MODULES:
            sys.modules.pop(name, None)
    if sys.version_info >= (3, 11):
        assert str(caught.value) == "Python version needs to be <= 3.10"
    else:
        assert caught.value.name == "ttsfrd"


# --- model id in the ModelScope cache -----------------------------------------------------


def test_model_id_is_found_in_the_modelscope_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, str | None]],
    no_network: None,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    older = make_model(cache / "models" / "iic" / "speech_tiny", ("zhitian_emo",))
    newer = make_model(cache / "models" / "iic--speech_tiny2" / "snapshots" / "master", ("zhiyan_emo",))
    assert SambertEngine.from_cache("iic/speech_tiny").model_dir == older.resolve()
    assert SambertEngine.from_cache("iic/speech_tiny2").model_dir == newer.resolve()
    with pytest.raises(EngineUnavailableError, match=r"'iic/absent' is not in the local ModelScope cache"):
        SambertEngine.from_cache("iic/absent")
    with pytest.raises(EngineUnavailableError, match="not a ModelScope model id"):
        SambertEngine.from_cache("../etc")


# --- real Sambert -------------------------------------------------------------------------


@pytest.mark.skipif(
    not os.environ.get("SAMBERT_TEST_MODEL_DIR"),
    reason="set SAMBERT_TEST_MODEL_DIR to a ModelScope Sambert-HifiGAN model folder (kantts and "
           "ttsfrd installed) to run the real model",
)
def test_real_sambert() -> None:
    engine = SambertEngine(Path(os.environ["SAMBERT_TEST_MODEL_DIR"]))
    for voice in engine.voices():
        for style in voice.styles:
            pcm = engine.synthesize("您好，欢迎致电客户服务中心。", voice=voice.name, style=style)
            assert pcm.sample_rate == engine.sample_rate
            assert pcm.duration > 1.0
            rms = float(np.sqrt(np.mean(pcm.samples.astype(np.float64) ** 2)))
            assert rms > 300, f"{voice.name}/{style} is nearly silent"


# --- settings and loading -----------------------------------------------------------------


def test_engines_setting_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("engines: [fastspeech2, sambert]\n", encoding="utf-8")
    settings = load_settings(path, environ={"HUIYIN_SAMBERT_MODEL_DIR": str(tmp_path)})
    assert settings.engines == ("fastspeech2", "sambert")
    assert settings.sambert_model_dir == tmp_path
    settings = load_settings(path, environ={
        "HUIYIN_ENGINES": "sambert", "HUIYIN_SAMBERT_MODEL_ID": "iic/speech_tiny",
        "HUIYIN_DEFAULT_VOICE": "zhitian_emo",
    })
    assert settings.engines == ("sambert",)
    assert settings.sambert_model_id == "iic/speech_tiny"
    assert settings.default_voice == "zhitian_emo"
    assert load_settings(environ={}).engines == ("fastspeech2",)


def test_engine_settings_are_checked_at_startup(tmp_path: Path) -> None:
    empty = tmp_path / "settings.yaml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"environment: setting 'engines': unknown engine 'tacotron'"):
        load_settings(empty, environ={"HUIYIN_ENGINES": "fastspeech2,tacotron"})
    with pytest.raises(ConfigError, match=r"includes 'sambert', which needs setting 'sambert_model_dir'"):
        load_settings(empty, environ={"HUIYIN_ENGINES": "sambert"})
    with pytest.raises(ConfigError, match="both set"):
        load_settings(empty, environ={"HUIYIN_ENGINES": "sambert", "HUIYIN_SAMBERT_MODEL_DIR": "m",
                                      "HUIYIN_SAMBERT_MODEL_ID": "iic/m"})
    with pytest.raises(ConfigError, match="at least one"):
        load_settings(empty, environ={"HUIYIN_ENGINES": ""})


def test_every_engine_name_has_a_builder() -> None:
    assert set(BUILDERS) == set(ENGINES)


def test_load_engines_builds_the_configured_engines(
    tmp_path: Path, calls: list[tuple[str, str | None]]
) -> None:
    model = make_model(tmp_path / "model")
    settings = Settings(engines=("sambert",), sambert_model_dir=model, workers=2, threads=2)
    engines = load_engines(settings)
    assert [type(e) for e in engines] == [SambertEngine, SambertEngine]
    with pytest.raises(ConfigError, match=r"'default_voice': no configured engine offers 'baker'"):
        load_engines(Settings(engines=("sambert",), sambert_model_dir=model, default_voice="baker"))


def test_unloadable_sambert_never_falls_back(tmp_path: Path) -> None:
    settings = Settings(engines=("fastspeech2", "sambert"), sambert_model_dir=tmp_path / "missing")
    with pytest.raises(EngineUnavailableError, match="does not exist"):
        load_engines(settings)
    with pytest.raises(EngineUnavailableError, match="neither setting 'sambert_model_dir'"):
        load_engines(Settings(engines=("sambert",)))


def run_serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUIYIN_")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environ.update({"HUIYIN_DATA_DIR": str(tmp_path / "data"), "HUIYIN_PORT": str(port), **env})
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve"], cwd=REPO, env=environ,
        capture_output=True, text=True, timeout=120,
    )


def test_serve_stops_with_the_engines_message(tmp_path: Path) -> None:
    missing = tmp_path / "no-model"
    done = run_serve(tmp_path, HUIYIN_ENGINES="fastspeech2,sambert",
                     HUIYIN_SAMBERT_MODEL_DIR=str(missing))
    assert done.returncode == 1
    assert f"huiyin: error: the ModelScope model folder {missing} does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_serve(tmp_path, HUIYIN_ENGINES="sambert")
    assert done.returncode == 2
    assert "configuration error" in done.stderr and "sambert_model_dir" in done.stderr
    assert "Traceback" not in done.stderr


# --- two engines, one gateway -------------------------------------------------------------


@pytest.fixture
def two_engines(
    engine: FastSpeech2Engine, tmp_path: Path, calls: list[tuple[str, str | None]]
) -> tuple[FastSpeech2Engine, SambertEngine]:
    tone = SambertEngine(make_model(tmp_path / "model", ("zhitian_emo",), ["happy"]))
    return engine, tone


@pytest.fixture
async def gateway(
    aiohttp_client: MakeClient, two_engines: tuple[FastSpeech2Engine, SambertEngine], tmp_path: Path,
) -> Client:
    # Settings built directly: reading the settings file here would block the running loop.
    settings = Settings(data_dir=tmp_path / "data", max_text_length=100)
    return await aiohttp_client(create_app(settings, engines=list(two_engines)))


def decode(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    return audio, int(rate)


async def test_voice_chooses_the_engine(
    gateway: Client, calls: list[tuple[str, str | None]]
) -> None:
    baker = await gateway.get("/tts.wav", params={"text": "您好", "voice": "baker"})
    tone = await gateway.get("/tts.wav", params={"text": "您好", "voice": "zhitian_emo"})
    assert baker.status == 200 and tone.status == 200
    baker_audio, baker_rate = decode(await baker.read())
    tone_audio, tone_rate = decode(await tone.read())
    assert baker_rate == 24000 and tone_rate == 16000
    assert len(tone_audio) == round(2 * SECONDS_PER_CHAR * 16000)
    assert calls[-1] == ("您好", "zhitian_emo")
    assert baker.headers["ETag"] != tone.headers["ETag"]
    happy = await gateway.get("/tts.wav", params={"text": "您好", "voice": "zhitian_emo", "emotion": "happy"})
    assert happy.status == 200
    assert calls[-1][0].startswith('<speak><emotion category="happy"')
    assert happy.headers["ETag"] not in (baker.headers["ETag"], tone.headers["ETag"])


async def test_api_keys_differ_per_engine_and_ranges_are_per_engine(gateway: Client) -> None:
    keys = []
    for voice in ("baker", "zhitian_emo"):
        answer = await gateway.post("/api/tts", json={"text": "欢迎致电", "voice": voice})
        assert answer.status == 200, await answer.text()
        keys.append((await answer.json())["key"])
    assert keys[0] != keys[1]
    too_fast = await gateway.post("/api/tts", json={"text": "欢迎致电", "voice": "zhitian_emo", "speed": 1.2})
    assert too_fast.status == 422
    assert (await too_fast.json())["field"] == "speed"
    fast_baker = await gateway.post("/api/tts", json={"text": "欢迎致电", "voice": "baker", "speed": 1.2})
    assert fast_baker.status == 200


async def test_api_voices_lists_both_engines(gateway: Client) -> None:
    described = await (await gateway.get("/api/voices")).json()
    engines = {e["name"]: e for e in described["engines"]}
    assert set(engines) == {"fastspeech2", "sambert"}
    assert [v["name"] for v in engines["sambert"]["voices"]] == ["zhitian_emo"]
    assert engines["sambert"]["voices"][0]["styles"] == ["neutral", "happy"]
    assert engines["sambert"]["sample_rate"] == 16000
    assert engines["sambert"]["settings"]["speed"] == {"min": 1.0, "max": 1.0, "default": 1.0}
    assert [v["name"] for v in engines["fastspeech2"]["voices"]] == ["baker"]
    assert described["default_voice"] == "baker"


async def test_default_voice_setting_picks_the_engine(
    aiohttp_client: MakeClient, two_engines: tuple[FastSpeech2Engine, SambertEngine], tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", default_voice="zhitian_emo")
    client = await aiohttp_client(create_app(settings, engines=list(two_engines)))
    answer = await client.get("/tts.wav", params={"text": "您好"})
    assert answer.status == 200
    assert decode(await answer.read())[1] == 16000
    assert (await (await client.get("/api/voices")).json())["default_voice"] == "zhitian_emo"
