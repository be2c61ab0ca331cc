"""A ModelScope model folder read and checked, without loading anything.

What the engine reads from the model folder:

- `configuration.json` (required): `task` must be `text-to-speech`; `pipeline.type` and
  `model.type` name the registered pipeline and model; `model.sample_rate`, when present, is
  the rate the model declares (checked against the audio it makes at startup);
  `model.lang_type` (PinYin, ZhHK, EnUS ...) gives the voices' language.
- speakers: `voices/voices.json`, `{"voices": [...]}`, ModelScope's Sambert layout (each listed
  speaker has its folder `voices/<name>/`); without that file, `model.voices` (or `model.voice`)
  in `configuration.json`. The voices keep the model's own speaker names (`zhitian_emo` ...).
- emotions: an `emotions` key in `voices/voices.json`, else `model.emotions` (or
  `model.emotion`) in `configuration.json`: a list shared by every speaker, or a mapping from
  speaker to list. They become the voice's styles after `neutral`, which is always first and
  means plain text. Any other style is sent as `<speak><emotion category="…" intensity="1.0">`
  markup, the form ModelScope's emotional Sambert models take.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synth.engine import SynthesisError

TASK = "text-to-speech"
# ModelScope's own Sambert-HifiGAN pipeline type
# (modelscope.metainfo.Pipelines.sambert_hifigan_tts).
SAMBERT_PIPELINE = "sambert-hifigan-tts"
LANGUAGES = {"PinYin": "zh-CN", "ZhHK": "zh-HK", "EnUS": "en-US", "EnGB": "en-GB"}
_STYLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class EngineUnavailableError(SynthesisError):
    """The engine cannot load: a package or a model file is missing; the message says what to do."""


@dataclass(frozen=True)
class ModelConfig:
    """What the engine needs from a model folder, read and checked without loading anything."""

    directory: Path
    pipeline_type: str
    model_type: str
    declared_rate: int | None
    language: str
    speakers: tuple[str, ...]
    emotions: Mapping[str, tuple[str, ...]]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineUnavailableError(f"{path}: cannot read it: {exc}") from None
    except ValueError as exc:
        raise EngineUnavailableError(f"{path}: not valid JSON: {exc}") from None


def _names(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise EngineUnavailableError(f"{where} must be a name or a list of names, got {raw!r}")
    names = tuple(i.strip() for i in items)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EngineUnavailableError(f"{where} lists '{duplicates[0]}' twice")
    return names


def _emotions(raw: Any, speakers: tuple[str, ...], where: str) -> dict[str, tuple[str, ...]]:
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - set(speakers))
        if unknown:
            raise EngineUnavailableError(f"{where} names '{unknown[0]}', which is not a speaker")
        per_voice = {s: _names(raw.get(s), f"{where}['{s}']") for s in speakers}
    else:
        shared = _names(raw, where)
        per_voice = {s: shared for s in speakers}
    for names in per_voice.values():
        bad = [n for n in names if not _STYLE_NAME.fullmatch(n)]
        if bad:
            raise EngineUnavailableError(f"{where}: '{bad[0]}' is not a valid emotion name")
    return per_voice


def _missing_sambert_files(directory: Path, speakers: tuple[str, ...]) -> list[str]:
    """The files ModelScope's Sambert-HifiGAN model reads that are absent (relative names)."""
    missing = [] if (directory / "resource.zip").is_file() else ["resource.zip"]
    for speaker in speakers:
        base = directory / "voices" / speaker
        for part in ("am", "voc"):
            if not (base / part / "config.yaml").is_file():
                missing.append(f"voices/{speaker}/{part}/config.yaml")
            ckpt = base / part / "ckpt"
            if not (ckpt.is_dir() and any(ckpt.glob("checkpoint_*.pth"))):
                missing.append(f"voices/{speaker}/{part}/ckpt/checkpoint_*.pth")
    return missing


def read_model_config(directory: Path) -> ModelConfig:
    """Read and check a model folder's configuration; every problem names the file or field."""
    if not directory.is_dir():
        raise EngineUnavailableError(
            f"the ModelScope model folder {directory} does not exist; put the model there "
            "(a folder with configuration.json, as ModelScope downloads it) or fix the "
            "'sambert_model_dir' setting"
        )
    config_path = directory / "configuration.json"
    if not config_path.is_file():
        raise EngineUnavailableError(
            f"{directory} has no configuration.json: it is not a ModelScope model folder; "
            "copy the whole model folder there, configuration.json included"
        )
    config = _read_json(config_path)
    if not isinstance(config, dict):
        raise EngineUnavailableError(f"{config_path}: must be a JSON object")
    if config.get("task") != TASK:
        raise EngineUnavailableError(
            f"{config_path}: 'task' is {config.get('task')!r}, not '{TASK}': not a speech model"
        )
    types: dict[str, str] = {}
    for section in ("pipeline", "model"):
        value = config.get(section)
        kind = value.get("type") if isinstance(value, dict) else None
        if not isinstance(kind, str) or not kind:
            raise EngineUnavailableError(f"{config_path}: '{section}.type' is missing")
        types[section] = kind
    model: dict[str, Any] = config["model"]
    rate = model.get("sample_rate")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0):
        raise EngineUnavailableError(
            f"{config_path}: 'model.sample_rate' must be a positive integer"
        )

    listing_path = directory / "voices" / "voices.json"
    listing: dict[str, Any] = {}
    if listing_path.is_file():
        raw_listing = _read_json(listing_path)
        if not isinstance(raw_listing, dict):
            raise EngineUnavailableError(f"{listing_path}: must be a JSON object")
        listing = raw_listing
        speakers = _names(listing.get("voices"), f"{listing_path}: 'voices'")
        absent = [s for s in speakers if not (directory / "voices" / s).is_dir()]
        if absent:
            raise EngineUnavailableError(
                f"{listing_path} lists speaker '{absent[0]}' but its folder "
                f"voices/{absent[0]}/ is missing in {directory}"
            )
    else:
        speakers = _names(model.get("voices", model.get("voice")), f"{config_path}: 'model.voices'")
    if not speakers:
        raise EngineUnavailableError(
            f"{directory}: no speakers listed; expected voices/voices.json with "
            '{"voices": [...]} (ModelScope\'s Sambert layout) or \'model.voices\' in '
            "configuration.json"
        )
    if listing.get("emotions") is not None:
        emotions = _emotions(listing["emotions"], speakers, f"{listing_path}: 'emotions'")
    else:
        emotions = _emotions(
            model.get("emotions", model.get("emotion")), speakers,
            f"{config_path}: 'model.emotions'",
        )

    if types["pipeline"] == SAMBERT_PIPELINE:
        missing = _missing_sambert_files(directory, speakers)
        if missing:
            raise EngineUnavailableError(
                f"the Sambert-HifiGAN model in {directory} is incomplete; missing: "
                f"{', '.join(missing)}; copy the complete model folder there"
            )
    language = LANGUAGES.get(str(model.get("lang_type", "PinYin")), "zh-CN")
    return ModelConfig(
        directory, types["pipeline"], types["model"], rate, language, speakers, emotions
    )

