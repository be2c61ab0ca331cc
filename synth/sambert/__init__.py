"""Optional engine: ModelScope text-to-speech models (Sambert-HifiGAN) through ModelScope's own
`pipeline(Tasks.text_to_speech, model=<local folder>)`.

Nothing here touches the network (offline.py). config.py reads what the engine needs from the
model folder, fingerprint.py hashes what the audio depends on, engine.py speaks.
"""

from synth.sambert.config import EngineUnavailableError, ModelConfig, read_model_config
from synth.sambert.engine import SambertEngine
from synth.sambert.fingerprint import model_fingerprint
from synth.sambert.offline import NAME, resolve_model_id

__all__ = [
    "NAME",
    "EngineUnavailableError",
    "ModelConfig",
    "SambertEngine",
    "model_fingerprint",
    "read_model_config",
    "resolve_model_id",
]
