"""Convert the standalone encoder and decoder graphs to TFLite and ONNX, float32 and int8.

Choices, each measured on this project's decoder (see README):

- TFLite int8 is *full-integer* (``TFLITE_BUILTINS_INT8``, int8 input and output). Dynamic-
  range quantization is never used: it runs the transposed convolutions ~50x slower.
- TFLite files have a *fixed* batch size. XNNPACK only takes TRANSPOSE_CONV with static
  shapes, and it cannot resize a delegated graph, so each batch size is its own file.
- Conversion goes through ``TFLiteConverter.from_keras_model``. ``from_concrete_functions``
  on a Keras 3 model silently writes a file without weights.
- ONNX comes from tf2onnx (opset 17) with a dynamic batch; the int8 ONNX file is made by
  onnxruntime ``quantize_static`` in QDQ format (the only format in which it quantizes
  ConvTranspose), per-channel, 7-bit weights (``reduce_range``, for AVX2-only CPUs),
  after ``quant_pre_process``.
- Both converters take ``per_channel`` (default True); ``export/variants.py`` tries both and
  the graphs of ``export/graphs.py``, and keeps per runtime the fastest that validates.
- The converters' chatter goes to a temporary file (``compressor.runtime.quiet``), not the
  user's terminal; it is shown only when a conversion fails.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from compressor.runtime.quiet import quiet

ONNX_OPSET = 17


def with_fixed_batch(model, batch: int | None, input_name: str, output_name: str):
    """Wrap ``model`` in a graph whose input has a static batch dimension (or None)."""
    import keras

    inp = keras.Input(shape=model.input_shape[1:], batch_size=batch, name=input_name)
    out = keras.layers.Identity(name=output_name)(model(inp))
    return keras.Model(inp, out, name=f"{model.name}_b{batch or 'dyn'}")


def to_tflite(
    model, representative: np.ndarray | None = None, *, per_channel: bool = True, min_bytes: int = 1024
) -> bytes:
    """float32 TFLite, or full-integer int8 when ``representative`` inputs are given.

    ``per_channel=False`` quantizes each weight tensor with one scale instead of one per
    output channel (coarser, sometimes faster kernels). A file under ``min_bytes`` is refused
    as weightless (what a silent converter failure writes); a caller converting models that
    small on purpose (``bench.decoder_floor``'s one-layer files) lowers it.
    """
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:
        batch = model.input_shape[0] or 1
        usable = len(representative) - len(representative) % batch

        def samples():
            for i in range(0, usable, batch):
                yield [representative[i : i + batch].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = samples
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        if not per_channel:
            conv._experimental_disable_per_channel = True
    with quiet():  # keras prints its SavedModel signature, the converter its settings
        blob = conv.convert()
    if len(blob) < min_bytes:
        raise RuntimeError(f"TFLite conversion produced only {len(blob)} bytes: the weights are missing")
    return blob


def to_onnx(model, input_name: str, output_name: str) -> bytes:
    """float32 ONNX with a dynamic batch, input and output renamed to stable names."""
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=input_name)]
    with quiet():
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=ONNX_OPSET)
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [output_name if o == old else o for o in node.output]
    proto.graph.output[0].name = output_name
    _canonical_names(proto.graph)
    return proto.SerializeToString()


def _canonical_names(graph) -> None:
    """Name nodes ``n0, n1, ...`` and tensors ``t0, t1, ...`` in the order the nodes use them.

    tf2onnx numbers the names it generates with a process-wide counter, so converting the same
    model a second time in one process gave other names, other bytes and another model id.
    The graph's input and output keep their names, symbolic dimensions become ``d0, d1, ...``,
    and initializers are then sorted by name.
    """
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def canonical(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = f"t{len(names)}"
        return names[name]

    for i, node in enumerate(graph.node):
        node.input[:] = [canonical(n) for n in node.input]
        node.output[:] = [canonical(n) for n in node.output]
        node.name = f"n{i}"
    for init in graph.initializer:
        init.name = canonical(init.name)
    for info in graph.value_info:
        info.name = canonical(info.name)
    dims: dict[str, str] = {}  # symbolic dimensions (the dynamic batch) are counter-numbered too
    for info in [*graph.input, *graph.output, *graph.value_info]:
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = dims.setdefault(dim.dim_param, f"d{len(dims)}")
    ordered = sorted(graph.initializer, key=lambda init: int(init.name[1:]) if init.name[1:].isdigit() else -1)
    copies = [type(init)() for init in ordered]
    for copy, init in zip(copies, ordered):
        copy.CopyFrom(init)
    del graph.initializer[:]
    graph.initializer.extend(copies)


def quantize_onnx(
    fp32: bytes, input_name: str, calibration: np.ndarray, batch: int = 50, *, per_channel: bool = True
) -> bytes:
    """int8 QDQ ONNX, per-channel (or per-tensor) weights, calibrated (min/max) on ``calibration`` inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(range(0, len(calibration), batch))

        def get_next(self):
            i = next(self._it, None)
            return None if i is None else {input_name: calibration[i : i + batch].astype(np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32)
        with quiet():
            quant_pre_process(str(src), str(pre))
            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                # 7-bit weights: x86 CPUs without VNNI (AVX2 only) saturate int8 products in
                # onnxruntime's u8s8 kernels (decoder outputs off by up to 0.64 here); with
                # reduce_range the same file is off by at most 0.13 and loses no pixel accuracy.
                reduce_range=True,
            )
        return out.read_bytes()
