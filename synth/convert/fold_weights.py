"""Fold the quantized convolution weights of the converted FastSpeech2 into float ones.

The TFLite acoustic model keeps its weights as 8-bit integers; tf2onnx gives each a
DequantizeLinear node, run on every call. For a convolution that also keeps ONNX Runtime
off its blocked-layout kernels, whose weights must be constant; folded, the model runs
about 1.4 times faster. The values are the ones DequantizeLinear computes,
(q - zero_point) * scale in float32, so only the order of the convolutions' sums changes.
The matrix products keep their integer weights: ONNX Runtime runs those as 8-bit products
(MatMulNBits) that are as fast, and folding them too made the recognizer's syllable error
rate on the spoken corpora worse, where folding the convolutions alone left it as it was.

Runs inside the throwaway build environment (it needs the onnx package).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def _dequantized(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> np.ndarray:
    q = values[node.input[0]].astype(np.float32)
    scale = values[node.input[1]].astype(np.float32)
    zero = values[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.float32(0)
    if scale.ndim == 1 and scale.size > 1:  # per channel, along `axis`
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if np.ndim(zero) else zero
    return ((q - zero) * scale).astype(np.float32)


def fold_convolution_weights(model: onnx.ModelProto) -> int:
    """Replace every DequantizeLinear of constants that feeds only Conv nodes by its float
    result; returns how many were folded."""
    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    kept, folded = [], []
    for node in graph.node:
        users = consumers.get(node.output[0], [])
        if (node.op_type == "DequantizeLinear" and all(i in values for i in node.input)
                and users and all(u == "Conv" for u in users)):
            folded.append(numpy_helper.from_array(_dequantized(node, values), node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(folded)
    used = {name for node in graph.node for name in node.input}
    remaining = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(remaining)
    return len(folded)


def fold(path: Path) -> None:
    """Fold the convolution weights of the model at path, in place."""
    model = onnx.load(str(path))
    if fold_convolution_weights(model) == 0:
        raise ValueError(f"{path.name}: no quantized convolution weights to fold")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
