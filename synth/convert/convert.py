"""Convert the default voice's TFLite models to ONNX. Runs inside the throwaway build
environment (TensorFlow, tf2onnx, onnxslim), never in the runtime one, with
fold_weights.py and plain_vocoder.py beside it.

The acoustic model's quantized convolution weights are folded (fold_weights.py), and the
vocoder is rebuilt as a plain graph (plain_vocoder.py); the converted one is
left beside it as mb_melgan.converted.onnx, for the caller to check the two against each
other.

usage: python convert.py SRC_DIR OUT_DIR   (prints a JSON object of tool versions)
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import fold_weights
import plain_vocoder

MODELS = {"fastspeech2_quan.tflite": "fastspeech2.onnx", "mb_melgan.tflite": "mb_melgan.onnx"}
OPSET = "17"


def main() -> int:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for tflite, onnx_name in MODELS.items():
        raw = out / f"{onnx_name}.raw"
        subprocess.run(
            [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(src / tflite),
             "--output", str(raw), "--opset", OPSET],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        # onnxslim folds the shape arithmetic tf2onnx leaves behind.
        subprocess.run(
            [sys.executable, "-m", "onnxslim", str(raw), str(out / onnx_name)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        raw.unlink()
    fold_weights.fold(out / "fastspeech2.onnx")
    converted = out / "mb_melgan.converted.onnx"
    (out / "mb_melgan.onnx").replace(converted)
    plain_vocoder.rebuild(converted, out / "mb_melgan.onnx")
    tools = {name: metadata.version(name) for name in ("tensorflow-cpu", "tf2onnx", "onnx", "onnxslim")}
    tools["opset"] = OPSET
    print(json.dumps(tools))
    return 0


if __name__ == "__main__":
    sys.exit(main())
