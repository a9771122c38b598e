"""A small float32 -> float16 converter for ONNX models (what a strongly typed TensorRT FP16
engine and ONNX Runtime CUDA FP16 are built from).

Every float32 initializer and Constant becomes float16; the graph keeps float32 input and output
(a Cast after the input and before the output), so runners feed and return float32 as for every
other representation. Inputs that ONNX requires to stay float32 (Resize scales) are left alone.
No op is kept in float32 otherwise: the U-Nets are Conv/ConvTranspose/Relu/MaxPool/Concat (and
BatchNorm folded into Conv), all well defined in float16.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..io import atomic_path

# (op_type, input index) pairs that must stay float32
_KEEP_FLOAT32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def convert_float16(proto: onnx.ModelProto, keep_io_float32: bool = True) -> onnx.ModelProto:
    """A float16 copy of ``proto`` (see module docstring)."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    g = proto.graph
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node):
        raise ValueError("convert_float16: the model is quantized (QDQ); convert the float model instead")
    keep32 = {n.input[i] for n in g.node for (op, i) in _KEEP_FLOAT32_INPUTS
              if n.op_type == op and len(n.input) > i}
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and t.name not in keep32:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for n in g.node:
        if n.op_type == "Constant" and not set(n.output) & keep32:
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16
    float_inputs = [i for i in g.input if i.type.tensor_type.elem_type == TensorProto.FLOAT
                    and i.name not in {t.name for t in g.initializer}]
    float_outputs = [o for o in g.output if o.type.tensor_type.elem_type == TensorProto.FLOAT]
    new_nodes = []
    if keep_io_float32:
        for inp in float_inputs:
            cast_name = f"{inp.name}_fp16"
            for n in g.node:
                for k, name in enumerate(n.input):
                    if name == inp.name:
                        n.input[k] = cast_name
            new_nodes.append(helper.make_node("Cast", [inp.name], [cast_name], name=f"{inp.name}_to_fp16",
                                              to=TensorProto.FLOAT16))
        tail = []
        for out in float_outputs:
            src = f"{out.name}_fp16"
            for n in g.node:
                for k, name in enumerate(n.output):
                    if name == out.name:
                        n.output[k] = src
                for k, name in enumerate(n.input):
                    if name == out.name:
                        n.input[k] = src
            tail.append(helper.make_node("Cast", [src], [out.name], name=f"{out.name}_to_fp32",
                                         to=TensorProto.FLOAT))
    else:
        tail = []
        for v in float_inputs + float_outputs:
            v.type.tensor_type.elem_type = TensorProto.FLOAT16
    nodes = new_nodes + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    onnx.checker.check_model(proto)
    return proto


def convert_float16_file(src: str | os.PathLike, dst: str | os.PathLike, keep_io_float32: bool = True) -> Path:
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such ONNX file")
    proto = convert_float16(onnx.load(str(src)), keep_io_float32)
    with atomic_path(dst) as tmp:
        onnx.save(proto, str(tmp))
    return Path(dst)
