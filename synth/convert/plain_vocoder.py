"""MB-MelGAN as a plain ONNX graph, built from the weights of the one tf2onnx makes.

tf2onnx turns each of the TFLite vocoder's 1-D convolutions into ExpandDims, a transpose,
a 2-D convolution, a squeeze and a separate bias add, and each dilated one into a
SpaceToBatchND/BatchToSpaceND chain with shape arithmetic computed on every run. This
module writes the network the way it is defined (TensorFlowTTS's MB-MelGAN generator and
PQMF synthesis filter): every convolution a Conv or ConvTranspose over [batch, channels, 1,
time], with its dilation and bias as attributes and inputs. ONNX Runtime then keeps the
activations in its blocked layout from one convolution to the next.

The arithmetic is the same, operation for operation; `huiyin models prepare` runs both
graphs on one mel and refuses the plain one unless it gives the same samples.

Runs inside the throwaway build environment (it needs the onnx package).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = 3  # upsampling stages
STACKS = 4  # residual stacks per stage, dilation 3**j
LEAK = 0.2
EDGE_KERNEL = 7  # the first and last convolutions, reflection-padded by 3
PQMF_BANDS = 4
_STACK_CONV = re.compile(r"sequential_4/residual_stack_\._(\d)\._\._(\d)/(conv1d_(\d+)|shortcut)/conv1d\d?$")


class Builder:
    """Nodes and initializers of the new graph; tensors over [batch, channels, 1, time]."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}_{self._count}"

    def constant(self, value: np.ndarray, kind: str) -> str:
        name = self._name(kind)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: object) -> str:
        out = output or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray, dilation: int = 1) -> str:
        """weight: [out, in, k]."""
        w = self.constant(weight[:, :, None, :].astype(np.float32), "weight")
        b = self.constant(bias.astype(np.float32), "bias")
        return self.op("Conv", [x, w, b], kernel_shape=[1, weight.shape[2]],
                       dilations=[1, dilation], strides=[1, 1], pads=[0, 0, 0, 0])

    def conv_transpose(self, x: str, weight: np.ndarray, bias: np.ndarray | None, stride: int) -> str:
        """weight: [in, out, k]. Cropped as TensorFlow's 'same' padding crops: the output is
        stride times the input, its first stride // 2 samples dropped."""
        inputs = [x, self.constant(weight[:, :, None, :].astype(np.float32), "weight")]
        if bias is not None:
            inputs.append(self.constant(bias.astype(np.float32), "bias"))
        crop = weight.shape[2] - stride
        return self.op("ConvTranspose", inputs, kernel_shape=[1, weight.shape[2]],
                       strides=[1, stride], pads=[0, crop // 2, 0, crop - crop // 2])

    def pad_time(self, x: str, size: int, mode: str = "reflect") -> str:
        pads = self.constant(np.asarray([0, 0, 0, size, 0, 0, 0, size], dtype=np.int64), "pads")
        return self.op("Pad", [x, pads], mode=mode)

    def leaky(self, x: str) -> str:
        return self.op("LeakyRelu", [x], alpha=LEAK)


class Source:
    """The tf2onnx graph's weights, found by the TensorFlow layer names its nodes keep."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.nodes = {n.name: n for n in model.graph.node}
        self.stacks: dict[tuple[int, int], dict[str, onnx.NodeProto]] = {}
        for node in model.graph.node:
            match = _STACK_CONV.match(node.name) if node.op_type == "Conv" else None
            if match:
                self.stacks.setdefault((int(match[1]), int(match[2])), {})[match[3]] = node

    def node(self, name: str, op_type: str) -> onnx.NodeProto:
        node = self.nodes.get(name)
        if node is None or node.op_type != op_type:
            raise ValueError(f"the converted vocoder has no {op_type} node {name!r}")
        return node

    def weight(self, node: onnx.NodeProto) -> np.ndarray:
        return self.values[node.input[1]]

    def bias(self, layer: str, conv: onnx.NodeProto | None = None) -> np.ndarray:
        """A layer's bias: its BiasAdd's constant, plus the (zero) one the conv node holds."""
        add = self.node(f"{layer}/BiasAdd", "Add")
        (value,) = [self.values[i] for i in add.input if i in self.values]
        bias = value.reshape(-1).astype(np.float32)
        if conv is not None and len(conv.input) > 2 and conv.input[2] in self.values:
            bias = bias + self.values[conv.input[2]]
        return bias


def _conv1d(weight: np.ndarray, kernel: int) -> np.ndarray:
    """[out, in, 1, k] -> [out, in, k], checking k."""
    if weight.ndim != 4 or weight.shape[2] != 1 or weight.shape[3] != kernel:
        raise ValueError(f"unexpected convolution weight of shape {weight.shape}")
    return weight[:, :, 0, :]


def build(model: onnx.ModelProto) -> onnx.ModelProto:
    """The plain graph: input 'mels' [1, frames, 80], output 'Identity' [1, samples, 1], as
    the converted graph has them."""
    src, g = Source(model), Builder()
    x = g.op("Unsqueeze", [g.op("Transpose", ["mels"], perm=[0, 2, 1]),
                           g.constant(np.asarray([2], dtype=np.int64), "axes")])
    first = src.node("sequential_4/conv1d/conv1d2", "Conv")
    x = g.conv(g.pad_time(x, EDGE_KERNEL // 2), _conv1d(src.weight(first), EDGE_KERNEL),
               src.bias("sequential_4/conv1d", first))
    for i in range(STAGES):
        layer = f"sequential_4/conv_transpose_._{i}/conv2d_transpose" + (f"_{i}" if i else "")
        up = src.node(f"{layer}/conv2d_transpose1", "ConvTranspose")
        weight = src.weight(up)  # [in, out, k, 1]
        stride = next(helper.get_attribute_value(a) for a in up.attribute if a.name == "strides")[0]
        if weight.ndim != 4 or weight.shape[3] != 1 or weight.shape[2] != 2 * stride:
            raise ValueError(f"unexpected upsampling weight of shape {weight.shape}")
        x = g.conv_transpose(g.leaky(x), weight[:, :, :, 0], src.bias(layer), stride)
        for j in range(STACKS):
            dilation, stack = 3**j, f"sequential_4/residual_stack_._{i}._._{j}"
            convs = src.stacks.get((i, j), {})
            shortcut = convs.pop("shortcut", None)
            if shortcut is None or len(convs) != 2:
                raise ValueError(f"{stack}: expected a shortcut and two convolutions")
            (dilated_name, dilated), (pointwise_name, pointwise) = sorted(
                convs.items(), key=lambda kv: int(kv[0].split("_")[1]))
            h = g.pad_time(g.leaky(x), dilation)
            h = g.conv(h, _conv1d(src.weight(dilated), 3), src.bias(f"{stack}/{dilated_name}", dilated),
                       dilation)
            h = g.conv(g.leaky(h), _conv1d(src.weight(pointwise), 1),
                       src.bias(f"{stack}/{pointwise_name}", pointwise))
            s = g.conv(x, _conv1d(src.weight(shortcut), 1), src.bias(f"{stack}/shortcut", shortcut))
            x = g.op("Add", [s, h])
    last = src.node("sequential_4/conv1d_25/conv1d2", "Conv")
    x = g.conv(g.pad_time(g.leaky(x), EDGE_KERNEL // 2), _conv1d(src.weight(last), EDGE_KERNEL),
               src.bias("sequential_4/conv1d_25", last))
    x = g.op("Tanh", [x])
    # The TFLite model quantizes the sub-band signals to 8 bits before the synthesis filter.
    quant = src.node("sequential_4/activation_20/Tanh1", "QuantizeLinear")
    scale, zero = (g.constant(src.values[quant.input[k]], "q") for k in (1, 2))
    x = g.op("DequantizeLinear", [g.op("QuantizeLinear", [x, scale, zero]), scale, zero])
    # PQMF synthesis: zero-stuffing upsampling by the band count, then the 63-tap filter.
    stuff = src.node("conv1d_transpose;PartitionedCall/conv1d_transpose1", "ConvTranspose")
    x = g.conv_transpose(x, _conv1d(src.weight(stuff), PQMF_BANDS), None, PQMF_BANDS)
    synthesis = src.node("conv1d;PartitionedCall/conv1d2", "Conv")
    taps = src.weight(synthesis).shape[3]
    x = g.conv(g.pad_time(x, taps // 2, mode="constant"), _conv1d(src.weight(synthesis), taps),
               src.values[synthesis.input[2]])
    g.op("Reshape", [x, g.constant(np.asarray([1, -1, 1], dtype=np.int64), "shape")], output="Identity")
    graph = helper.make_graph(
        g.nodes, "mb_melgan",
        [helper.make_tensor_value_info("mels", TensorProto.FLOAT, [1, "frames", 80])],
        [helper.make_tensor_value_info("Identity", TensorProto.FLOAT, [1, "samples", 1])],
        g.initializers,
    )
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    plain.ir_version = model.ir_version
    onnx.checker.check_model(plain)
    return plain


def rebuild(source: Path, target: Path) -> None:
    """Write the plain graph of the converted vocoder at source to target."""
    onnx.save(build(onnx.load(str(source))), str(target))
