"""Output formats: resample the engine's PCM and encode it for IVR platforms and browsers."""

from __future__ import annotations

import io
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr


class UnknownFormatError(ValueError):
    """The requested output format does not exist; the message lists the valid ones."""

    field = "format"


class UnsupportedRateError(ValueError):
    """The requested sample rate is not allowed for the format; the message lists the allowed ones."""

    field = "rate"


@dataclass(frozen=True)
class AudioFormat:
    """One output format: how to label it and which sample rates it carries."""

    name: str
    extension: str
    content_type: str
    # A rate the format itself implies; None lets the caller choose, defaulting to the native rate.
    sample_rate: int | None
    # Rates a caller may request; empty when the format decides the rate.
    allowed_rates: tuple[int, ...]
    description: str
    # (rate, Content-Type) pairs that replace content_type at that output rate (see content_type()).
    rate_types: tuple[tuple[int, str], ...] = ()


# Where they exist, content types follow Asterisk's own format modules, since its HTTP
# media cache (res_http_media_cache.c) takes the file format from the Content-Type before
# it looks at the URL: format_wav.c declares "audio/wav|audio/x-wav" (and the long form
# with rate=8000) for its 8 kHz `wav`, and only "audio/x-wav;codec=pcm;bit=16;rate=16000"
# for its 16 kHz `wav16`; format_pcm.c declares "audio/basic" for raw μ-law. Its A-law and
# signed-linear (format_sln.c) modules declare no MIME type at all, so Asterisk relies on
# the URL's extension (.alaw, .sln, .sln16) for those. A WAV at 22050 or 24000 Hz has no
# Asterisk format whatever it is called, so it keeps the audio/wav browsers know.
#
# Raw little-endian PCM is deliberately not labelled audio/L16: RFC 2586 defines L16 as
# network byte order, and ffmpeg-based clients do decode audio/L16 as big-endian, which
# turns this audio into loud noise. No registered type describes little-endian PCM;
# audio/pcm with rate and channel parameters is the label several speech APIs use, and a
# client that does not know it fails loudly instead of playing noise.

# Asterisk compares the whole header value (case aside) with this, so it is sent verbatim:
# no spaces after the semicolons.
WAV16_TYPE = "audio/x-wav;codec=pcm;bit=16;rate=16000"
_WAV_RATE_TYPES = ((16000, WAV16_TYPE),)

FORMATS: Mapping[str, AudioFormat] = MappingProxyType({
    # 44.1 and 48 kHz are what speech SDKs (DashScope's, CosyVoice's) offer besides the
    # telephone and voice rates; no PBX plays them.
    "wav": AudioFormat(
        "wav", "wav", "audio/wav", None, (8000, 16000, 22050, 24000, 44100, 48000),
        "RIFF WAV, 16-bit PCM, mono", _WAV_RATE_TYPES,
    ),
    # Asterisk reads 16 kHz WAV only as its wav16 format; audio/wav and .wav mean 8 kHz to it.
    "wav16": AudioFormat(
        "wav16", "wav16", WAV16_TYPE, 16000, (), "RIFF WAV, 16-bit PCM, mono, 16 kHz",
    ),
    # RFC 2046 defines audio/basic as exactly this: headerless 8 kHz mono μ-law.
    "ulaw": AudioFormat("ulaw", "ulaw", "audio/basic", 8000, (), "raw G.711 μ-law, 8 kHz"),
    "alaw": AudioFormat("alaw", "alaw", "audio/x-alaw-basic", 8000, (), "raw G.711 A-law, 8 kHz"),
    "sln": AudioFormat(
        "sln", "sln", "audio/pcm; rate=8000; channels=1", 8000, (),
        "raw signed 16-bit little-endian PCM, 8 kHz",
    ),
    "sln16": AudioFormat(
        "sln16", "sln16", "audio/pcm; rate=16000; channels=1", 16000, (),
        "raw signed 16-bit little-endian PCM, 16 kHz",
    ),
    # An MP3 says its own rate, so a caller may choose any its codec carries.
    "mp3": AudioFormat(
        "mp3", "mp3", "audio/mpeg", None,
        (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
        "MP3, mono, at the native rate (or the rate asked)",
    ),
    # audio/ogg is the type RFC 7845 registers for Ogg Opus; the codecs parameter lets a
    # browser tell Opus from Vorbis before downloading (canPlayType answers "probably"
    # rather than "maybe"). The .opus extension is the one RFC 7845 recommends for
    # audio-only Ogg Opus, and the one Asterisk's format_ogg_opus reads (.ogg is Vorbis to it).
    "ogg": AudioFormat(
        "ogg", "opus", "audio/ogg; codecs=opus", None, (), "Ogg Opus, mono, at the native rate",
    ),
    "flac": AudioFormat(
        "flac", "flac", "audio/flac", None, (), "FLAC, 16-bit, mono, at the native rate",
    ),
    # OpenAI's `pcm` response is headerless 24 kHz s16le; without a header the client cannot
    # learn the rate, so this stays 24 kHz whatever voice produced the audio.
    "pcm": AudioFormat(
        "pcm", "pcm", "audio/pcm; rate=24000; channels=1", 24000, (),
        "raw signed 16-bit little-endian PCM, 24 kHz (OpenAI pcm)",
    ),
})

# Rates each codec can carry, for formats that follow the native rate.
_CODEC_RATES: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "mp3": FORMATS["mp3"].allowed_rates,
    "ogg": (8000, 12000, 16000, 24000, 48000),
})

_SHOWN_CHARS = 32


def _shown(value: object) -> str:
    """A client-supplied value, cut short so an error message stays short."""
    text = str(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _lookup(fmt: str) -> AudioFormat:
    """The format called fmt, or UnknownFormatError."""
    found = FORMATS.get(fmt) if isinstance(fmt, str) else None
    if found is None:
        raise UnknownFormatError(
            f"format '{_shown(fmt)}' is not supported; use one of: {', '.join(FORMATS)}"
        )
    return found


def content_type(fmt: str, rate: int) -> str:
    """The Content-Type of fmt encoded at rate: every answer's type is decided here."""
    spec = _lookup(fmt)
    for at, named in spec.rate_types:
        if at == rate:
            return named
    return spec.content_type


def content_types(fmt: str) -> tuple[str, ...]:
    """Every Content-Type fmt may be answered with, its own first."""
    spec = _lookup(fmt)
    return tuple(dict.fromkeys((spec.content_type, *(named for _, named in spec.rate_types))))


def _nearest(rate: int, choices: tuple[int, ...]) -> int:
    """The choice closest to rate, the higher one on a tie (never lose bandwidth needlessly)."""
    return min(choices, key=lambda c: (abs(c - rate), -c))


def _check_rate(name: str, rate: int) -> None:
    """Reject a non-positive or non-integer rate (a programming error, not a client one)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer, got {rate!r}")


def output_rate(fmt: str, native_rate: int, rate: int | None) -> int:
    """The sample rate encode() produces for fmt and rate from native_rate audio; validates both."""
    spec = _lookup(fmt)
    _check_rate("native_rate", native_rate)
    if spec.sample_rate is not None:
        default = spec.sample_rate
    elif spec.name in _CODEC_RATES:
        default = _nearest(int(native_rate), _CODEC_RATES[spec.name])
    else:
        default = int(native_rate)
    if rate is None:
        return default
    # Asking explicitly for the rate the format would use anyway is always fine.
    allowed = sorted({*spec.allowed_rates, default})
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate not in allowed:
        # Quote anything but an integer, so a rate that arrived as text is recognizable as such.
        shown = str(rate) if isinstance(rate, (int, np.integer)) else f"'{_shown(rate)}'"
        raise UnsupportedRateError(
            f"rate {shown} is not supported for {spec.name}; "
            f"use one of: {', '.join(map(str, allowed))}"
        )
    return int(rate)


def _check_samples(samples: npt.NDArray[np.int16]) -> None:
    """Reject anything but a 1-D int16 array."""
    if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError("samples must be a 1-D int16 array (mono 16-bit PCM)")


def resample(samples: npt.NDArray[np.int16], from_rate: int, to_rate: int) -> npt.NDArray[np.int16]:
    """Resample mono int16 PCM with soxr's high-quality filter; the input itself when rates match."""
    _check_samples(samples)
    _check_rate("from_rate", from_rate)
    _check_rate("to_rate", to_rate)
    if from_rate == to_rate:
        return samples
    # Work in float: the anti-aliasing filter rings past full scale near clipped peaks,
    # and an int16 result would wrap those overshoots around to the opposite sign.
    resampled: npt.NDArray[np.float32] = soxr.resample(
        samples.astype(np.float32), int(from_rate), int(to_rate), quality="HQ"
    )
    out: npt.NDArray[np.int16] = np.clip(np.rint(resampled), -32768, 32767).astype(np.int16)
    return out


# G.711 encoders following the ITU-T G.191 reference: the magnitude of a negative sample is
# its one's complement, so -1 and 0 land in the same step and the code table is symmetric.
# libsndfile negates instead, moving one boundary per step by one LSB for negative samples,
# and ffmpeg's tables move some boundaries near segment edges; both are inaudible, but the
# reference is the one to match.

def _ulaw_encode(samples: npt.NDArray[np.int16], rate: int) -> bytes:
    """G.711 μ-law bytes for int16 PCM."""
    value = samples.astype(np.int32)
    negative = value < 0
    # 14-bit magnitude plus the μ-law bias of 33, capped at the top of segment 7.
    magnitude = np.minimum((np.where(negative, ~value, value) >> 2) + 33, 0x1FFF)
    segment = np.floor(np.log2(magnitude)).astype(np.int32) - 5
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0xF)
    # μ-law transmits every bit inverted; positive samples carry the sign bit set.
    encoded: bytes = (np.where(negative, 0x7F, 0xFF) ^ code).astype(np.uint8).tobytes()
    return encoded


def _alaw_encode(samples: npt.NDArray[np.int16], rate: int) -> bytes:
    """G.711 A-law bytes for int16 PCM."""
    value = samples.astype(np.int32)
    negative = value < 0
    magnitude = np.where(negative, ~value, value) >> 4  # 12-bit magnitude
    segment = np.maximum(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 3, 0)
    mantissa = (magnitude >> np.maximum(segment - 1, 0)) & 0xF
    code = np.where(segment == 0, magnitude, (segment << 4) | mantissa)
    code = np.where(negative, code, code | 0x80)
    # A-law inverts the even bits so that quiet signals still produce transitions on the line.
    return (code ^ 0x55).astype(np.uint8).tobytes()


Encoder = Callable[[npt.NDArray[np.int16], int], bytes]


def _soundfile_bytes(samples: npt.NDArray[np.int16], rate: int, container: str, subtype: str) -> bytes:
    """Encode with libsndfile into memory."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=container, subtype=subtype)
    return buffer.getvalue()


def _via_soundfile(container: str, subtype: str) -> Encoder:
    """An encoder that writes the given libsndfile container and subtype."""

    def encode_with_soundfile(samples: npt.NDArray[np.int16], rate: int) -> bytes:
        return _soundfile_bytes(samples, rate, container, subtype)

    return encode_with_soundfile


_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(data: bytes) -> int:
    """The page checksum Ogg defines: CRC-32, polynomial 0x04C11DB7, unreflected, zero start."""
    # zlib computes the reflected variant in C; on bit-reversed input with a zero start its
    # result is the bit-reversed Ogg checksum, which avoids a byte loop in Python.
    reflected = zlib.crc32(data.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _with_ogg_serial(data: bytes, serial: int) -> bytes:
    """The Ogg stream with every page's serial number replaced and its checksum redone."""
    pages = bytearray(data)
    start = 0
    while start < len(pages):
        if pages[start:start + 4] != b"OggS":
            raise ValueError("encoder produced a malformed Ogg stream")
        segments = pages[start + 26]
        table_end = start + 27 + segments
        end = table_end + sum(pages[start + 27:table_end])
        pages[start + 14:start + 18] = serial.to_bytes(4, "little")
        pages[start + 22:start + 26] = bytes(4)
        pages[start + 22:start + 26] = _ogg_crc(bytes(pages[start:end])).to_bytes(4, "little")
        start = end
    return bytes(pages)


def _encode_ogg_opus(samples: npt.NDArray[np.int16], rate: int) -> bytes:
    """Ogg Opus whose bytes depend only on the audio."""
    # libsndfile picks a random stream serial number, so the same audio would encode to
    # different bytes every time; deriving it from the audio keeps encoding a pure function
    # (and cached audio byte-identical) while distinct audio still gets distinct serials.
    serial = zlib.crc32(samples.astype("<i2").tobytes())
    return _with_ogg_serial(_soundfile_bytes(samples, rate, "OGG", "OPUS"), serial)


def _little_endian(samples: npt.NDArray[np.int16], rate: int) -> bytes:
    """Headerless signed 16-bit little-endian PCM."""
    return samples.astype("<i2").tobytes()


_ENCODERS: Mapping[str, Encoder] = MappingProxyType({
    "wav": _via_soundfile("WAV", "PCM_16"),
    "wav16": _via_soundfile("WAV", "PCM_16"),
    "ulaw": _ulaw_encode,
    "alaw": _alaw_encode,
    "sln": _little_endian,
    "sln16": _little_endian,
    "mp3": _via_soundfile("MP3", "MPEG_LAYER_III"),
    "ogg": _encode_ogg_opus,
    "flac": _via_soundfile("FLAC", "PCM_16"),
    "pcm": _little_endian,
})


def encode(
    samples: npt.NDArray[np.int16], sample_rate: int, fmt: str, rate: int | None = None
) -> bytes:
    """Encode mono int16 PCM at sample_rate as fmt, resampled to the rate the format requires."""
    spec = _lookup(fmt)
    _check_rate("sample_rate", sample_rate)
    target = output_rate(spec.name, sample_rate, rate)
    _check_samples(samples)
    if len(samples) == 0:
        # libsndfile writes an empty or unreadable file for MP3, FLAC and Ogg without audio.
        raise ValueError("samples must not be empty")
    return _ENCODERS[spec.name](resample(samples, sample_rate, target), target)


def wav_payload(data: bytes) -> bytes:
    """The sample bytes of a RIFF WAV (its `data` chunk): raw PCM at the WAV's own rate."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF WAV")
    at = 12
    while at + 8 <= len(data):
        chunk, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        if chunk == b"data":
            return data[at + 8:at + 8 + size]
        at += 8 + size + (size & 1)
    raise ValueError("a WAV without a data chunk")


class Mp3Encoder:
    """One MP3 stream encoded as its samples come: one encoder, so pieces join without the
    header and the encoder delay each would carry as an MP3 of its own (a player stops at
    the first one's stated length, or pauses at each join). `encode` gives the frames ready
    so far, `finish` the rest. The stream starts with the empty frame libsndfile keeps for
    the length it writes last, into bytes already sent: players hear it as 24 ms of silence.
    Its calls may come from different threads, one at a time or `close` beside another.
    """

    def __init__(self, rate: int) -> None:
        if rate not in FORMATS["mp3"].allowed_rates:
            raise UnsupportedRateError(
                f"rate {rate} is not supported for mp3; use one of: "
                f"{', '.join(map(str, FORMATS['mp3'].allowed_rates))}")
        self.rate = rate
        self._lock = threading.Lock()
        self._buffer = io.BytesIO()
        # Constant bit rate: a stream has no header to state a variable one's length, and
        # players estimate it from the first frame's rate.
        self._file = sf.SoundFile(self._buffer, "w", samplerate=rate, channels=1, format="MP3",
                                  subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT")
        self._sent = 0

    def encode(self, samples: npt.NDArray[np.int16]) -> bytes:
        """Take samples at the stream's rate; the bytes encoded so far (possibly none)."""
        _check_samples(samples)
        with self._lock:
            if self._file.closed:
                return b""
            if len(samples):
                self._file.write(samples)
            return self._taken()

    def finish(self) -> bytes:
        """End the stream: its last frames."""
        with self._lock:
            self._close()
            return self._taken()

    def close(self) -> None:
        """Release the encoder, once an encoding under way is done (a stream left early drops
        its last frames). Left to the garbage collector, libsndfile would write them into a
        buffer already freed."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def _taken(self) -> bytes:
        with self._buffer.getbuffer() as written:
            data = bytes(written[self._sent:])
        self._sent += len(data)
        return data
