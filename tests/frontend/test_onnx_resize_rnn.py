"""ONNX Resize (per-axis interpolation matrices), RNN/GRU/LSTM (unrolled) and saturating float8
casts: the interpreter against onnxruntime or onnx's reference, and ember.compile on llvm."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import ember  # noqa: E402
from ember.errors import UnsupportedError  # noqa: E402
from ember.frontend.onnx import from_onnx  # noqa: E402
from ember.frontend.onnx.resize import ResizeSpec, axis_weights  # noqa: E402
from ember.ir import interpret  # noqa: E402

F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=20):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _ort(model, *arrays):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, arrays, strict=True)))


def _check(model, *arrays, expected=None, compiled=False):
    expected = _ort(model, *arrays) if expected is None else expected
    runs = [interpret(from_onnx(model), *arrays)]
    if compiled:
        runs.append(ember.compile(model, cache=False)(*arrays))
    for got in runs:
        for g, e in zip(got, expected, strict=True):
            assert g.dtype == e.dtype
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def _resize(x_shape, mode, scales=None, sizes=None, roi=None, **attrs):
    inits = [numpy_helper.from_array(np.array(roi or [], np.float32), "roi")]
    names = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        names.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        names += ["", "sizes"]
    node = helper.make_node("Resize", names, ["y"], mode=mode, **attrs)
    x = helper.make_tensor_value_info("x", F32, list(x_shape))
    return _model([node], [x], [helper.make_tensor_value_info("y", F32, None)], inits)


def test_linear_weights_of_a_2x_upsample_with_half_pixel_centers():
    weights, outside = axis_weights(ResizeSpec(mode="linear"), 2, 4, 2.0)
    expected = [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]
    np.testing.assert_allclose(weights, expected)
    assert not outside.any()


@pytest.mark.parametrize(
    ("mode", "scales", "sizes", "attrs"),
    [
        ("nearest", [1, 1, 2, 3], None, {}),
        ("nearest", None, [1, 1, 7, 3], {"nearest_mode": "ceil",
                                         "coordinate_transformation_mode": "align_corners"}),
        ("linear", [1, 1, 0.6, 1.7], None, {}),
        ("linear", None, [1, 1, 3, 2], {"antialias": 1}),
        ("cubic", [1, 1, 1.5, 0.8], None, {"exclude_outside": 1, "cubic_coeff_a": -0.5}),
        ("cubic", [1, 1, 2, 2], None, {"coordinate_transformation_mode": "asymmetric"}),
        ("linear", None, [3, 3], {"axes": [3, 2], "keep_aspect_ratio_policy": "not_larger"}),
    ],
)  # fmt: skip
def test_resize_matches_onnx_reference(rng, mode, scales, sizes, attrs):
    model = _resize((1, 2, 4, 5), mode, scales, sizes, **attrs)
    x = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    _check(model, x, expected=ReferenceEvaluator(model).run(None, {"x": x}))


def test_tf_crop_and_resize_extrapolates_and_compiles(rng):
    model = _resize((1, 1, 4, 4), "linear", None, [1, 1, 3, 3], roi=[0, 0, -0.2, 0.4, 1, 1, 0.6, 1.3],
                    coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=7.0)  # fmt: skip
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    expected = ReferenceEvaluator(model).run(None, {"x": x})
    assert (expected[0] == 7.0).any()
    _check(model, x, expected=expected, compiled=True)


def test_resize_needs_constant_scales():
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")
    model = _model([node], [helper.make_tensor_value_info("x", F32, [1, 1, 2, 2]),
                            helper.make_tensor_value_info("s", F32, [4])],
                   [helper.make_tensor_value_info("y", F32, None)])  # fmt: skip
    with pytest.raises(UnsupportedError, match="input 'scales' must be a constant"):
        from_onnx(model)


def _recurrent(op, rng, direction="forward", gates=1, seq=4, batch=2, size=3, hidden=5, **attrs):
    dirs = 2 if direction == "bidirectional" else 1
    inits = [
        numpy_helper.from_array(rng.standard_normal((dirs, gates * hidden, size)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((dirs, gates * hidden, hidden)).astype(np.float32), "r"),
        numpy_helper.from_array(rng.standard_normal((dirs, 2 * gates * hidden)).astype(np.float32), "b"),
    ]  # fmt: skip
    node = helper.make_node(op, ["x", "w", "r", "b"], ["y", "y_h"], hidden_size=hidden,
                            direction=direction, **attrs)  # fmt: skip
    x = helper.make_tensor_value_info("x", F32, [seq, batch, size])
    outs = [helper.make_tensor_value_info(n, F32, None) for n in ("y", "y_h")]
    model = _model([node], [x], outs, inits, opset=14)
    return model, rng.standard_normal((seq, batch, size)).astype(np.float32)


@pytest.mark.parametrize(
    ("op", "gates", "direction", "attrs"),
    [
        ("RNN", 1, "forward", {}),
        ("RNN", 1, "reverse", {"activations": ["Relu"]}),
        ("GRU", 3, "bidirectional", {}),
        ("GRU", 3, "forward", {"linear_before_reset": 1}),
        ("LSTM", 4, "forward", {}),
        ("LSTM", 4, "bidirectional", {"clip": 0.5}),
    ],
)
def test_recurrent_matches_onnxruntime(rng, op, gates, direction, attrs):
    model, x = _recurrent(op, rng, direction, gates, **attrs)
    _check(model, x)


def test_lstm_compiles(rng):
    model, x = _recurrent("LSTM", rng, "bidirectional", 4, seq=3)
    _check(model, x, compiled=True)


@pytest.mark.parametrize("to", [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2FNUZ,
                                TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT4E2M1])  # fmt: skip
def test_cast_to_small_floats_saturates_like_onnx_reference(to):
    x = np.array([0.3, -1e6, 1e6, np.inf, -np.inf, np.nan, 470.0, 2.5], dtype=np.float32)
    node = helper.make_node("Cast", ["x"], ["y"], to=to)
    model = _model([node], [helper.make_tensor_value_info("x", F32, [8])],
                   [helper.make_tensor_value_info("y", to, [8])], opset=23)  # fmt: skip
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    (got,) = interpret(from_onnx(model), x)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.astype(np.float32), expected.astype(np.float32))
