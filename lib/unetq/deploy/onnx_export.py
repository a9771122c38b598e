"""PyTorch -> ONNX export.

Two exporters exist in torch 2.13. Both give the same clean graph for our U-Nets
(Conv / ConvTranspose / Relu / MaxPool / Concat, BatchNorm folded into the convolutions, outputs
equal to PyTorch within 1e-5): the TorchScript one (``dynamo=False``, the default here: about 20x
faster to run, a single self-contained file, native opset 17) and the ``torch.export`` one
(``exporter="dynamo"``: opset 18, down-converted when asked for 17). The TorchScript exporter
leaves ``Identity`` nodes where two parameters are equal (it de-duplicates initializers); they are
removed here so that every Conv reads its weights straight from an initializer, which the INT8
quantizer needs.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from ..io import atomic_path

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, image_size: int | tuple[int, int],
                dynamic_batch: bool = True, opset: int = 17, exporter: str = "torchscript",
                in_channels: int | None = None) -> Path:
    """Export ``model`` (in eval mode, on CPU, float32) to ``path`` for inputs
    ``[N, C, H, W]`` with ``H, W = image_size``; the batch dimension is dynamic unless
    ``dynamic_batch=False``. Input ``"input"``, output ``"logits"``. Written atomically."""
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be 'torchscript' or 'dynamo', got {exporter!r}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if h % 16 or w % 16:
        raise ValueError(f"image_size {h}x{w}: H and W must be divisible by 16 for the U-Nets")
    if in_channels is None:
        in_channels = int(getattr(model, "config", {}).get("in_channels", 3))
    path = Path(path)
    was_training = model.training
    model = model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, in_channels, h, w, device=device)
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tmp_onnx = tmp.with_suffix(".onnx")
            try:
                if exporter == "torchscript":
                    torch.onnx.export(
                        model, (x,), str(tmp_onnx), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                        opset_version=opset, dynamo=False, do_constant_folding=True,
                        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
                    )
                else:
                    torch.onnx.export(
                        model, (x,), str(tmp_onnx), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                        opset_version=max(opset, 18), dynamo=True, external_data=False, verbose=False,
                        dynamic_shapes=({"x": {0: torch.export.Dim("batch")}} if dynamic_batch else None),
                    )
                proto = onnx.load(str(tmp_onnx))
            finally:
                if tmp_onnx.exists():
                    tmp_onnx.unlink()
            proto = remove_identities(proto)
            proto.doc_string = f"unetq export of {getattr(model, 'config', {})} at {h}x{w}"
            onnx.checker.check_model(proto)
            onnx.save(proto, str(tmp))
    finally:
        model.train(was_training)
    return path


def remove_identities(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop ``Identity`` nodes, rewiring their consumers to the Identity's input (graph outputs
    keep their names: an Identity that produces a graph output stays)."""
    g = proto.graph
    outputs = {o.name for o in g.output}
    alias = {}
    keep = []
    for n in g.node:
        if n.op_type == "Identity" and n.output[0] not in outputs:
            alias[n.output[0]] = n.input[0]
        else:
            keep.append(n)

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    for n in keep:
        for i, name in enumerate(n.input):
            n.input[i] = resolve(name)
    del g.node[:]
    g.node.extend(keep)
    return proto


def onnx_file_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk of an ONNX model, its external-data files included."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    total = path.stat().st_size
    proto = onnx.load(str(path), load_external_data=False)
    seen = set()
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location" and e.value not in seen:
                seen.add(e.value)
                f = path.parent / e.value
                if f.exists():
                    total += f.stat().st_size
    return total


def op_counts(path_or_proto) -> dict[str, int]:
    """``{op_type: count}`` of an ONNX graph (e.g. to check what an export or a rewrite produced)."""
    proto = path_or_proto if isinstance(path_or_proto, onnx.ModelProto) else onnx.load(str(path_or_proto))
    out: dict[str, int] = {}
    for n in proto.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return dict(sorted(out.items()))


def check_parity(model: torch.nn.Module, path: str | os.PathLike, image_size: int, batch: int = 2,
                 seed: int = 0) -> float:
    """Max |ONNX Runtime - PyTorch| on random inputs (a batch of ``batch``) in float32."""
    import onnxruntime as ort

    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    c = int(getattr(model, "config", {}).get("in_channels", 3))
    x = np.random.default_rng(seed).random((batch, c, h, w), dtype=np.float32)
    model = model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).float().numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float(np.abs(y - ref).max())
