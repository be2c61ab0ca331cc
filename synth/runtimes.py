"""The numeric libraries under the ONNX engines, named in the engines' versions.

The same model and text give different samples under different ONNX Runtime (and numpy)
releases, and the Python versions Huiyin supports install different ones, so an engine's
version names them: audio from one runtime is never served under another's key.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort


def runtime_tag() -> str:
    """`ort<ONNX Runtime version>.np<numpy version>`, as it goes into an engine version."""
    return f"ort{ort.__version__}.np{np.__version__}"
