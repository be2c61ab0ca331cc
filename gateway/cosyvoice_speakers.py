"""CosyVoice's speaker ids (spk_id) and the voices they speak with here."""

from __future__ import annotations

from config import Settings
from gateway.errors import InvalidParameter
from synth.engine import InvalidInputError
from synth.prompts import is_adopted
from synth.voices import Voices

# The speakers of CosyVoice-300M-SFT (its spk2info); each is the default voice unless the
# `cosyvoice_speakers` setting maps it.
SPEAKERS = ("中文女", "中文男", "日语男", "粤语女", "英文女", "英文男", "韩语女")


def speaker_voice(settings: Settings, voices: Voices, spk_id: str) -> str:
    """Our voice for a CosyVoice speaker id: its mapping, the default voice for a speaker
    of CosyVoice's own, or one of our voice names; else a 422 naming spk_id."""
    voice = settings.cosyvoice_speakers.get(spk_id)
    if voice is None:
        voice = voices.default_voice if spk_id in SPEAKERS else spk_id
    if not is_adopted(voice):
        try:
            voices.resolve(voice)
            return voice
        except InvalidInputError:
            pass
    known = sorted({*SPEAKERS, *settings.cosyvoice_speakers})
    raise InvalidParameter(
        f"spk_id '{spk_id[:40]}' is not a speaker here; use one of: {', '.join(known)}, or a "
        "voice of GET /api/voices", "spk_id")


def speaker_names(settings: Settings, voices: Voices) -> dict[str, str]:
    """CosyVoice's speaker ids and the mapped ones, each with the voice it speaks with."""
    names = {spk: voices.default_voice for spk in SPEAKERS}
    names.update(settings.cosyvoice_speakers)
    return names
