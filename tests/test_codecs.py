"""Output formats: every format must decode back, with independent decoders, to the tone put in."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from synth.codecs import (
    FORMATS,
    AudioFormat,
    Mp3Encoder,
    UnknownFormatError,
    UnsupportedRateError,
    content_type,
    content_types,
    encode,
    output_rate,
    resample,
)

NATIVE = 24000

# What each format must produce from the default voice's 24 kHz audio.
EXPECTED_RATE = {
    "wav": 24000, "wav16": 16000, "ulaw": 8000, "alaw": 8000, "sln": 8000, "sln16": 16000,
    "mp3": 24000, "ogg": 24000, "flac": 24000, "pcm": 24000,
}

# libsndfile can read the raw G.711 streams; it shares no code with the numpy encoder.
RAW_SUBTYPE = {"ulaw": "ULAW", "alaw": "ALAW", "sln": "PCM_16", "sln16": "PCM_16", "pcm": "PCM_16"}


def tone(
    freq: float, rate: int = NATIVE, seconds: float = 1.0, amplitude: float = 0.5
) -> npt.NDArray[np.int16]:
    """A sine tone as int16 PCM."""
    t = np.arange(round(rate * seconds)) / rate
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_frequency(samples: npt.NDArray[np.int16], rate: int) -> float:
    """The frequency of the strongest FFT bin (Hann-windowed, so leakage cannot win)."""
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def rms(samples: npt.NDArray[np.integer]) -> float:
    """Root mean square level."""
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def snr_db(reference: npt.NDArray[np.integer], decoded: npt.NDArray[np.integer]) -> float:
    """Signal-to-noise ratio of decoded against reference, in dB."""
    error = decoded.astype(np.float64) - reference.astype(np.float64)
    return 20 * np.log10(rms(reference) / np.sqrt(np.mean(error**2)))


def decode(data: bytes, fmt: str, rate: int) -> tuple[npt.NDArray[np.int16], int, int]:
    """Samples, sample rate and channel count, read back without the code under test."""
    if fmt in RAW_SUBTYPE:
        # Headerless: the rate is an assumption here, which the tone's pitch then confirms.
        samples, got_rate = sf.read(
            io.BytesIO(data), samplerate=rate, channels=1, format="RAW",
            subtype=RAW_SUBTYPE[fmt], endian="LITTLE", dtype="int16",
        )
        if fmt in ("sln", "sln16", "pcm"):
            # Raw linear PCM needs no library at all: plain little-endian int16.
            assert np.array_equal(samples, np.frombuffer(data, dtype="<i2"))
        return samples, got_rate, 1
    info = sf.info(io.BytesIO(data))
    samples, got_rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return samples[:, 0], got_rate, info.channels


# --- the format table ---------------------------------------------------------------------

def test_the_format_table_is_exactly_the_documented_one() -> None:
    assert list(FORMATS) == [
        "wav", "wav16", "ulaw", "alaw", "sln", "sln16", "mp3", "ogg", "flac", "pcm",
    ]
    assert {name: f.content_type for name, f in FORMATS.items()} == {
        "wav": "audio/wav",
        "wav16": "audio/x-wav;codec=pcm;bit=16;rate=16000",
        "ulaw": "audio/basic",
        "alaw": "audio/x-alaw-basic",
        "sln": "audio/pcm; rate=8000; channels=1",
        "sln16": "audio/pcm; rate=16000; channels=1",
        "mp3": "audio/mpeg",
        "ogg": "audio/ogg; codecs=opus",
        "flac": "audio/flac",
        "pcm": "audio/pcm; rate=24000; channels=1",
    }
    assert FORMATS["wav16"].extension == "wav16"  # Asterisk only reads 16 kHz WAV as .wav16
    assert FORMATS["wav"].allowed_rates == (8000, 16000, 22050, 24000, 44100, 48000)
    for name, spec in FORMATS.items():
        assert isinstance(spec, AudioFormat)
        assert spec.name == name
        assert spec.description
        if spec.sample_rate is not None:
            assert spec.allowed_rates == ()  # a fixed rate leaves nothing to choose
    with pytest.raises(dataclasses.FrozenInstanceError):
        FORMATS["wav"].name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        FORMATS["x"] = FORMATS["wav"]  # type: ignore[index]


def test_output_rate_follows_the_native_rate_where_the_format_allows() -> None:
    assert {f: output_rate(f, NATIVE, None) for f in FORMATS} == EXPECTED_RATE
    # A 22.05 kHz voice: MP3 carries it as is, Opus has no such rate and takes the nearest.
    assert output_rate("mp3", 22050, None) == 22050
    assert output_rate("ogg", 22050, None) == 24000
    assert output_rate("ogg", 44100, None) == 48000
    assert output_rate("flac", 22050, None) == 22050
    assert output_rate("wav", 22050, None) == 22050
    assert output_rate("pcm", 22050, None) == 24000  # OpenAI clients assume 24 kHz
    assert output_rate("wav", NATIVE, 8000) == 8000
    assert output_rate("ulaw", NATIVE, 8000) == 8000  # naming the fixed rate is fine
    assert output_rate("mp3", NATIVE, 24000) == 24000
    assert output_rate("mp3", NATIVE, 8000) == 8000  # an MP3 says its rate: any its codec carries


def test_a_wavs_content_type_follows_its_rate() -> None:
    # Asterisk's format_wav.c: audio/wav is its 8 kHz `wav`; only this exact string is its
    # 16 kHz `wav16`. Other rates have no Asterisk format and keep what browsers know.
    wav16 = "audio/x-wav;codec=pcm;bit=16;rate=16000"
    assert {rate: content_type("wav", rate) for rate in FORMATS["wav"].allowed_rates} == {
        8000: "audio/wav", 16000: wav16, 22050: "audio/wav", 24000: "audio/wav",
        44100: "audio/wav", 48000: "audio/wav",
    }
    assert content_type("wav16", 16000) == wav16
    assert content_types("wav") == ("audio/wav", wav16)
    assert content_types("wav16") == (wav16,)
    for name, spec in FORMATS.items():
        if name not in ("wav", "wav16"):
            assert content_type(name, output_rate(name, NATIVE, None)) == spec.content_type
            assert content_types(name) == (spec.content_type,)
    with pytest.raises(UnknownFormatError):
        content_type("wav17", 16000)


# --- every format round-trips ------------------------------------------------------------

@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_decodes_back_to_the_same_tone(fmt: str) -> None:
    data = encode(tone(440), NATIVE, fmt)
    samples, rate, channels = decode(data, fmt, EXPECTED_RATE[fmt])
    assert rate == EXPECTED_RATE[fmt]
    assert channels == 1
    assert abs(len(samples) / rate - 1.0) < 0.01
    assert abs(peak_frequency(samples, rate) - 440) <= 2
    assert rms(samples) > 0.8 * rms(tone(440))  # the tone survived, not just its pitch


@pytest.mark.parametrize("rate", FORMATS["wav"].allowed_rates)
def test_wav_is_written_at_the_requested_rate(rate: int) -> None:
    data = encode(tone(440), NATIVE, "wav", rate)
    info = sf.info(io.BytesIO(data))
    assert (info.samplerate, info.channels, info.subtype) == (rate, 1, "PCM_16")
    samples, _ = sf.read(io.BytesIO(data), dtype="int16")
    assert len(samples) == rate
    assert abs(peak_frequency(samples, rate) - 440) <= 2


def test_native_rate_wav_is_the_input_unchanged() -> None:
    pcm = tone(440)
    samples, _ = sf.read(io.BytesIO(encode(pcm, NATIVE, "wav")), dtype="int16")
    assert np.array_equal(samples, pcm)
    assert encode(pcm, NATIVE, "pcm") == pcm.astype("<i2").tobytes()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_encoding_is_deterministic(fmt: str) -> None:
    pcm = tone(440)
    assert encode(pcm, NATIVE, fmt) == encode(pcm.copy(), NATIVE, fmt)


# --- G.711 --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["ulaw", "alaw"])
def test_g711_quantization_error_is_within_the_standard(fmt: str) -> None:
    pcm = tone(440, rate=8000, amplitude=0.25)  # mid-level, -12 dBFS
    data = encode(pcm, 8000, fmt)
    assert len(data) == len(pcm)  # one byte per sample, no header
    decoded, _, _ = decode(data, fmt, 8000)
    assert snr_db(pcm, decoded) > 35  # G.711 gives about 38 dB over most of its range


@pytest.mark.parametrize(
    ("fmt", "silence", "top", "bottom"), [("ulaw", 0xFF, 0x80, 0x00), ("alaw", 0xD5, 0xAA, 0x2A)]
)
def test_g711_codes_match_the_standard_tables(fmt: str, silence: int, top: int, bottom: int) -> None:
    extremes = np.array([0, 32767, -32768], dtype=np.int16)
    assert encode(extremes, 8000, fmt) == bytes([silence, top, bottom])
    # Every code's reconstruction level must encode back to that same code.
    levels, _, _ = decode(bytes(range(256)), fmt, 8000)
    again = encode(levels.astype(np.int16), 8000, fmt)
    mismatched = [code for code in range(256) if again[code] != code]
    # μ-law has two zeros; 0x7F ("negative zero") decodes to 0, which encodes as 0xFF.
    assert mismatched == ([0x7F] if fmt == "ulaw" else [])


@pytest.mark.parametrize("fmt", ["ulaw", "alaw"])
def test_g711_negative_samples_mirror_positive_ones_as_in_g191(fmt: str) -> None:
    # The ITU-T G.191 reference takes the one's complement of a negative sample, so the
    # code for ~x is the code for x with only the sign bit changed, across the whole range.
    positive = np.arange(0, 32768, dtype=np.int16)
    codes = np.frombuffer(encode(positive, 8000, fmt), dtype=np.uint8)
    mirrored = np.frombuffer(encode(~positive, 8000, fmt), dtype=np.uint8)
    assert np.array_equal(mirrored, codes ^ 0x80)


# --- independent verification with ffmpeg --------------------------------------------------

@pytest.fixture(scope="module")
def ffprobe() -> str:
    """Path to ffprobe (`make test` installs ffmpeg; without it these checks fail)."""
    path = shutil.which("ffprobe")
    if path is None or shutil.which("ffmpeg") is None:
        pytest.fail("ffprobe/ffmpeg not installed; the independent decoding checks need them "
                    "(make test-tools, or apt-get install ffmpeg)")
    return path


def probe(ffprobe: str, path: Path, *input_options: str) -> dict[str, str]:
    """ffprobe's view of the only stream in a file, plus the container's name and duration."""
    out = subprocess.run(
        [ffprobe, "-v", "error", *input_options, "-i", str(path),
         "-show_entries", "stream=codec_name,sample_rate,channels:format=format_name,duration",
         "-of", "json"],
        capture_output=True, text=True, check=True,
    ).stdout
    parsed = json.loads(out)
    (stream,) = parsed["streams"]
    return {**{k: str(v) for k, v in stream.items()}, **parsed["format"]}


def ffmpeg_decode(data: bytes, *input_options: str) -> npt.NDArray[np.int16]:
    """Decode with ffmpeg to mono s16le at the stream's own rate."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    out = subprocess.run(
        [ffmpeg, "-v", "error", *input_options, "-i", "pipe:0", "-f", "s16le", "-ac", "1", "pipe:1"],
        input=data, capture_output=True, check=True,
    ).stdout
    return np.frombuffer(out, dtype="<i2")


@pytest.mark.parametrize(("fmt", "codec"), [("ulaw", "pcm_mulaw"), ("alaw", "pcm_alaw")])
def test_ffmpeg_reads_the_raw_g711_streams(ffprobe: str, tmp_path: Path, fmt: str, codec: str) -> None:
    data = encode(tone(440), NATIVE, fmt)
    raw = tmp_path / f"tone.{FORMATS[fmt].extension}"
    raw.write_bytes(data)
    demuxer = {"ulaw": "mulaw", "alaw": "alaw"}[fmt]
    options = ("-f", demuxer, "-ar", "8000", "-ac", "1")
    info = probe(ffprobe, raw, *options)
    assert (info["codec_name"], info["sample_rate"], info["channels"]) == (codec, "8000", "1")
    assert abs(float(info["duration"]) - 1.0) < 0.01
    # Played at 8 kHz the tone is still 440 Hz: the bytes really are 8 kHz G.711.
    decoded = ffmpeg_decode(data, *options)
    assert len(decoded) == 8000
    assert abs(peak_frequency(decoded, 8000) - 440) <= 2
    assert snr_db(resample(tone(440), NATIVE, 8000), decoded) > 30


@pytest.mark.parametrize(
    ("fmt", "container", "codec", "rate"),
    [
        ("wav", "wav", "pcm_s16le", "24000"),
        ("wav16", "wav", "pcm_s16le", "16000"),
        ("mp3", "mp3", "mp3", "24000"),
        # ffmpeg's Opus decoder always runs at 48 kHz, whatever rate the stream was made from.
        ("ogg", "ogg", "opus", "48000"),
        ("flac", "flac", "flac", "24000"),
    ],
)
def test_ffprobe_recognizes_the_containers(
    ffprobe: str, tmp_path: Path, fmt: str, container: str, codec: str, rate: str
) -> None:
    data = encode(tone(440), NATIVE, fmt)
    path = tmp_path / f"tone.{FORMATS[fmt].extension}"
    path.write_bytes(data)
    info = probe(ffprobe, path)
    assert info["format_name"] == container
    assert (info["codec_name"], info["sample_rate"], info["channels"]) == (codec, rate, "1")
    # Decoded length, not the header's duration: MP3's counts the encoder's delay and padding,
    # which the LAME tag tells a gapless decoder to drop.
    decoded = ffmpeg_decode(data)
    assert abs(len(decoded) / int(rate) - 1.0) < 0.01
    assert abs(peak_frequency(decoded, int(rate)) - 440) <= 2


# --- the Ogg serial rewrite ------------------------------------------------------------

def ogg_pages(data: bytes) -> list[bytes]:
    """An Ogg stream split into its pages."""
    pages, start = [], 0
    while start < len(data):
        assert data[start:start + 4] == b"OggS"
        segments = data[start + 26]
        end = start + 27 + segments + sum(data[start + 27:start + 27 + segments])
        pages.append(data[start:end])
        start = end
    return pages


def ogg_checksum(page: bytes) -> int:
    """Ogg's page CRC straight from its definition, one bit at a time."""
    crc = 0
    for byte in page[:22] + bytes(4) + page[26:]:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def test_ogg_pages_share_one_serial_and_carry_valid_checksums() -> None:
    first = encode(tone(440), NATIVE, "ogg")
    pages = ogg_pages(first)
    assert len(pages) >= 3  # OpusHead, OpusTags, audio
    assert pages[0][28:36] == b"OpusHead"
    assert len({page[14:18] for page in pages}) == 1
    for page in pages:
        assert int.from_bytes(page[22:26], "little") == ogg_checksum(page)
    other = ogg_pages(encode(tone(660), NATIVE, "ogg"))
    assert other[0][14:18] != pages[0][14:18]  # different audio, different stream serial


# --- resampling ---------------------------------------------------------------------------

def test_downsampling_to_8k_removes_what_8k_cannot_carry() -> None:
    above = resample(tone(6000), NATIVE, 8000)
    assert above.dtype == np.int16 and len(above) == 8000
    # Unfiltered, a 6 kHz tone would alias to 2 kHz at full strength.
    assert 20 * np.log10(rms(above) / rms(tone(6000))) < -40
    below = resample(tone(1000), NATIVE, 8000)
    assert abs(20 * np.log10(rms(below) / rms(tone(1000)))) < 0.1
    assert abs(peak_frequency(below, 8000) - 1000) <= 2


def test_resampling_to_the_same_rate_is_the_identity() -> None:
    pcm = tone(440)
    same = resample(pcm, NATIVE, NATIVE)
    assert same is pcm or np.array_equal(same, pcm)


def test_resampling_clips_overshoot_instead_of_wrapping() -> None:
    # A full-scale square wave: the filter rings above full scale at every edge.
    phase = np.sin(2 * np.pi * 100 * np.arange(NATIVE) / NATIVE)
    square = np.where(phase >= 0, 32767, -32768).astype(np.int16)
    out = resample(square, NATIVE, 8000)
    assert out.max() == 32767 and out.min() == -32768
    half = 40  # samples per half period at 8 kHz
    for start in range(2 * half, len(out) - 2 * half, 2 * half):
        assert (out[start + 5:start + half - 5] > 0).all()  # inside a positive half: no wrap
        assert (out[start + half + 5:start + 2 * half - 5] < 0).all()


def test_empty_input_resamples_to_empty() -> None:
    out = resample(np.zeros(0, dtype=np.int16), NATIVE, 8000)
    assert out.dtype == np.int16 and len(out) == 0


# --- errors -------------------------------------------------------------------------------

def test_unknown_format_names_it_and_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownFormatError) as caught:
        encode(tone(440), NATIVE, "mp4")
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message == (
        "format 'mp4' is not supported; "
        "use one of: wav, wav16, ulaw, alaw, sln, sln16, mp3, ogg, flac, pcm"
    )
    assert caught.value.field == "format"
    with pytest.raises(UnknownFormatError):
        output_rate("WAV", NATIVE, None)  # names are exact


def test_a_huge_bogus_format_does_not_make_a_huge_message() -> None:
    with pytest.raises(UnknownFormatError) as caught:
        output_rate("x" * 10_000, NATIVE, None)
    assert len(str(caught.value)) < 200


def test_unsupported_rate_names_it_and_lists_the_allowed_ones() -> None:
    with pytest.raises(UnsupportedRateError) as caught:
        encode(tone(440), NATIVE, "wav", 32000)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == (
        "rate 32000 is not supported for wav; use one of: 8000, 16000, 22050, 24000, 44100, 48000"
    )
    assert caught.value.field == "rate"
    # A rate that is still text (an unparsed query string) must not read as a valid one.
    with pytest.raises(UnsupportedRateError, match="^rate '8000' is not supported for wav;"):
        output_rate("wav", NATIVE, "8000")  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "rate", "allowed"), [
    ("ulaw", 16000, "8000"), ("alaw", 24000, "8000"), ("sln", 16000, "8000"),
    ("sln16", 8000, "16000"), ("wav16", 24000, "16000"), ("pcm", 8000, "24000"),
    ("ogg", 16000, "24000"), ("flac", 8000, "24000"),
    ("mp3", 96000, "8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000"),
])
def test_formats_refuse_a_rate_they_do_not_carry(fmt: str, rate: int, allowed: str) -> None:
    expected = f"^rate {rate} is not supported for {fmt}; use one of: {allowed}$"
    with pytest.raises(UnsupportedRateError, match=expected):
        encode(tone(440), NATIVE, fmt, rate)


def test_mp3_is_made_at_the_telephone_rates_too(ffprobe: str, tmp_path: Path) -> None:
    for rate in (8000, 16000):
        path = tmp_path / f"tone-{rate}.mp3"
        path.write_bytes(encode(tone(440), NATIVE, "mp3", rate))
        info = probe(ffprobe, path)
        assert (info["codec_name"], info["sample_rate"]) == ("mp3", str(rate))


def test_invalid_samples_are_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode(np.zeros(0, dtype=np.int16), NATIVE, "mp3")
    with pytest.raises(ValueError, match="int16"):
        encode(tone(440).astype(np.float32), NATIVE, "wav")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int16"):
        encode(np.zeros((10, 2), dtype=np.int16), NATIVE, "wav")
    with pytest.raises(ValueError, match="sample_rate"):
        encode(tone(440), 0, "wav")


@pytest.mark.parametrize("rate", [8000, 22050, 24000, 48000])
def test_an_mp3_stream_encoded_in_pieces_plays_as_one(ffprobe: str, tmp_path: Path, rate: int) -> None:
    pieces = np.array_split(resample(tone(440), NATIVE, rate), 7)  # pieces of odd lengths
    stream = Mp3Encoder(rate)
    data = b"".join(stream.encode(piece) for piece in pieces) + stream.finish()
    path = tmp_path / "stream.mp3"
    path.write_bytes(data)
    info = probe(ffprobe, path)
    assert (info["codec_name"], info["sample_rate"], info["channels"]) == ("mp3", str(rate), "1")
    decoded = ffmpeg_decode(data)
    # All of it, once: one encoder's delay and padding and its first, empty frame, no more.
    frame = 1152 if rate >= 32000 else 576
    assert 0 <= len(decoded) - rate <= 4 * frame
    assert abs(peak_frequency(decoded, rate) - 440) <= 2
    with pytest.raises(UnsupportedRateError, match="^rate 96000 is not supported for mp3"):
        Mp3Encoder(96000)


def test_an_mp3_stream_left_early_is_released_beside_an_encoding() -> None:
    stream = Mp3Encoder(24000)
    piece = tone(440)[:2400]
    encoding = threading.Thread(target=lambda: [stream.encode(piece) for _ in range(200)])
    encoding.start()
    stream.close()  # from another thread, while it encodes: after the piece under way
    encoding.join()
    assert stream.encode(piece) == b""  # closed: nothing more is encoded
    stream.finish()  # its last frames, taken once
    assert stream.finish() == b""
