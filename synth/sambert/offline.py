"""ModelScope imported and asked for a model without touching the network.

ModelScope 1.40.2 has no offline switch of its own, so the engine only ever hands it an absolute
local folder (which it reads without asking the hub) and resolves a model id in the local
ModelScope cache only (`local_files_only`). MODELSCOPE_OFFLINE and HF_HUB_OFFLINE are set to 1
before modelscope is imported, for the libraries that read them.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from synth.sambert.config import EngineUnavailableError

NAME = "sambert"
INSTALL_HINT = "pip install '.[modelscope]'"
_MODEL_ID = re.compile(r"\w[\w.-]*/\w[\w.-]*")


def go_offline() -> None:
    """Tell modelscope and the hub libraries under it to stay offline (and quiet)."""
    # Set before modelscope (and through it transformers / huggingface_hub) is imported.
    os.environ["MODELSCOPE_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # modelscope reads its log level once, as a number, and resets its logger to it on every
    # get_logger(); at INFO/WARNING it reports registry-index misses and absent preprocessors
    # on each load of a local model. Real failures raise.
    os.environ.setdefault("MODELSCOPE_LOG_LEVEL", str(logging.ERROR))


def unavailable_packages(exc: BaseException) -> EngineUnavailableError:
    """The error for ModelScope packages that are absent or fail to import."""
    return EngineUnavailableError(
        f"the '{NAME}' engine needs the ModelScope packages, which are not installed or do not "
        f"import: install them with {INSTALL_HINT} ({type(exc).__name__}: {exc})"
    )


def resolve_model_id(model_id: str) -> Path:
    """The folder of `model_id` in the local ModelScope cache (MODELSCOPE_CACHE, else
    ModelScope's default), found the way ModelScope looks (its current and older layouts,
    `hub/` included) without any network call."""
    if not _MODEL_ID.fullmatch(model_id):
        raise EngineUnavailableError(
            f"setting 'sambert_model_id': '{model_id}' is not a ModelScope model id (owner/name)"
        )
    go_offline()
    try:
        from modelscope.hub.snapshot_download import snapshot_download
        from modelscope_hub.errors import HubError
    except ImportError as exc:
        raise unavailable_packages(exc) from None
    # It logs each hit in an older cache layout at INFO (and reads MODELSCOPE_LOG_LEVEL as a
    # level name, unlike modelscope).
    logging.getLogger("modelscope_hub").setLevel(logging.WARNING)
    cache = os.environ.get("MODELSCOPE_CACHE") or None
    try:
        found = snapshot_download(model_id, cache_dir=cache, local_files_only=True)
    except (HubError, OSError, ValueError) as exc:
        where = cache or "ModelScope's default cache (~/.cache/modelscope)"
        raise EngineUnavailableError(
            f"ModelScope model '{model_id}' is not in the local ModelScope cache {where}: {exc}. "
            f"Fetch it where the hub is reachable (`modelscope download {model_id}`), copy the "
            "cache folder here and set MODELSCOPE_CACHE to it, or set 'sambert_model_dir' to a "
            "folder holding the model"
        ) from None
    return Path(found).resolve()

