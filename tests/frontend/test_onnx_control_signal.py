"""ONNX If/Loop/Scan unrolled at import, DFT as constant matrices, integer and QLinear
matmul/conv, LRN, Col2Im and ReverseSequence: the interpreter (and ember.compile on llvm) against
onnxruntime or numpy."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import ember  # noqa: E402
from ember.errors import UnsupportedError  # noqa: E402
from ember.frontend.onnx import ConstantInputError, from_onnx  # noqa: E402
from ember.ir import interpret  # noqa: E402

F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, initializers=(), opset=20):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _ort(model, *arrays):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, arrays, strict=True)))


def _check(model, *arrays, compiled=False):
    runs = [interpret(from_onnx(model), *arrays)]
    if compiled:
        runs.append(ember.compile(model, cache=False)(*arrays))
    for got in runs:
        for g, e in zip(got, _ort(model, *arrays), strict=True):
            assert g.dtype == e.dtype
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def _value(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _if_model(cond_is_input: bool):
    then = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [],
                             [_value("t", F32, [3])])  # fmt: skip
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                              [_value("e", F32, [3])])  # fmt: skip
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    inputs = [_value("x", F32, [3])]
    inits = []
    if cond_is_input:
        inputs.append(_value("c", TensorProto.BOOL, []))
    else:
        inits.append(numpy_helper.from_array(np.array(False), "c"))
    return _model([node], inputs, [_value("y", F32, [3])], inits)


def test_if_with_constant_condition_inlines_the_taken_branch(rng):
    model = _if_model(cond_is_input=False)
    g = from_onnx(model)
    assert [n.op.name for n in g.nodes] == ["neg"]
    _check(model, rng.standard_normal(3).astype(np.float32), compiled=True)


def test_if_on_a_graph_input_names_it():
    with pytest.raises(ConstantInputError, match="graph input 'c'"):
        from_onnx(_if_model(cond_is_input=True))


def test_loop_with_constant_trip_count_is_unrolled(rng):
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Mul", ["acc_out", "acc_out"], ["square"])],
        "body", [_value("i", I64, []), _value("cond_in", TensorProto.BOOL, []), _value("acc_in", F32, [2])],
        [_value("cond_out", TensorProto.BOOL, []), _value("acc_out", F32, [2]), _value("square", F32, [2])],
    )  # fmt: skip
    inits = [numpy_helper.from_array(np.array(3, np.int64), "m"),
             numpy_helper.from_array(np.array(True), "cond")]  # fmt: skip
    node = helper.make_node("Loop", ["m", "cond", "a"], ["total", "squares"], body=body)
    model = _model([node], [_value("x", F32, [2]), _value("a", F32, [2])],
                   [_value("total", F32, [2]), _value("squares", F32, [3, 2])], inits)  # fmt: skip
    _check(model, *(rng.standard_normal(2).astype(np.float32) for _ in range(2)))


def test_scan_is_unrolled_over_its_axis(rng):
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "row"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["o"])],
        "body", [_value("s_in", F32, [2]), _value("row", F32, [2])],
        [_value("s_out", F32, [2]), _value("o", F32, [2])],
    )  # fmt: skip
    node = helper.make_node("Scan", ["s", "xs"], ["final", "partial"], body=body, num_scan_inputs=1,
                            scan_input_directions=[1])  # fmt: skip
    model = _model([node], [_value("s", F32, [2]), _value("xs", F32, [4, 2])],
                   [_value("final", F32, [2]), _value("partial", F32, [4, 2])])  # fmt: skip
    _check(model, rng.standard_normal(2).astype(np.float32),
           rng.standard_normal((4, 2)).astype(np.float32))  # fmt: skip


def test_loop_with_data_dependent_condition_is_unsupported():
    body = helper.make_graph(
        [helper.make_node("ReduceSum", ["v_in"], ["total"], keepdims=0),
         helper.make_node("Less", ["total", "limit"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "v_in"], ["v_out"])],
        "body", [_value("i", I64, []), _value("cond_in", TensorProto.BOOL, []), _value("v_in", F32, [2])],
        [_value("cond_out", TensorProto.BOOL, []), _value("v_out", F32, [2])],
    )  # fmt: skip
    inits = [numpy_helper.from_array(np.array(5, np.int64), "m"),
             numpy_helper.from_array(np.array(9.0, np.float32), "limit")]  # fmt: skip
    node = helper.make_node("Loop", ["m", "", "v"], ["w"], body=body)
    model = _model([node], [_value("v", F32, [2])], [_value("w", F32, [2])], inits)
    with pytest.raises(UnsupportedError, match="condition depends on run-time data"):
        from_onnx(model)


@pytest.mark.parametrize(("complex_input", "inverse", "onesided"),
                         [(False, 0, 0), (False, 0, 1), (True, 1, 0), (True, 0, 0)])  # fmt: skip
def test_dft_matches_numpy(rng, complex_input, inverse, onesided):
    x = rng.standard_normal((2, 6, 2 if complex_input else 1)).astype(np.float32)
    node = helper.make_node("DFT", ["x", "", "axis"], ["y"], inverse=inverse, onesided=onesided)
    axis = numpy_helper.from_array(np.array(1, np.int64), "axis")
    model = _model(
        [node], [_value("x", F32, [2, 6, x.shape[-1]])], [_value("y", F32, None)], [axis]
    )
    signal = x[..., 0] + 1j * x[..., 1] if complex_input else x[..., 0]
    spectrum = np.fft.ifft(signal, axis=1) if inverse else np.fft.fft(signal, axis=1)
    spectrum = spectrum[:, :4] if onesided else spectrum
    expected = np.stack([spectrum.real, spectrum.imag], axis=-1)
    (got,) = interpret(from_onnx(model), x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_qlinear_matmul_and_matmul_integer_match_onnxruntime(rng):
    a = rng.integers(0, 255, (3, 4)).astype(np.uint8)
    b = rng.integers(0, 255, (4, 5)).astype(np.uint8)
    inits = [numpy_helper.from_array(np.array(v, dtype=dt), n) for n, v, dt in [
        ("sa", 0.02, np.float32), ("za", 120, np.uint8), ("sb", 0.01, np.float32),
        ("zb", 130, np.uint8), ("sy", 0.5, np.float32), ("zy", 100, np.uint8)]]  # fmt: skip
    nodes = [helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["q"]),
             helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["i"])]  # fmt: skip
    model = _model(nodes, [_value("a", TensorProto.UINT8, [3, 4]), _value("b", TensorProto.UINT8, [4, 5])],
                   [_value("q", TensorProto.UINT8, [3, 5]), _value("i", TensorProto.INT32, [3, 5])],
                   inits, opset=13)  # fmt: skip
    _check(model, a, b, compiled=True)


def test_lrn_col2im_and_reverse_sequence_match_onnxruntime(rng):
    inits = [numpy_helper.from_array(np.array([5, 5], np.int64), "image"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "block"),
             numpy_helper.from_array(np.array([3, 1, 2], np.int64), "lens")]  # fmt: skip
    nodes = [
        helper.make_node("LRN", ["x"], ["lrn"], size=3, alpha=0.01, beta=0.6, bias=1.5),
        helper.make_node("Col2Im", ["cols", "image", "block"], ["img"], pads=[1, 0, 0, 1],
                         strides=[2, 1]),
        helper.make_node("ReverseSequence", ["seq", "lens"], ["rev"], batch_axis=1, time_axis=0),
    ]  # fmt: skip
    model = _model(
        nodes,
        [_value("x", F32, [1, 4, 3, 3]), _value("cols", F32, [1, 12, 12]), _value("seq", F32, [4, 3, 2])],
        [_value("lrn", F32, None), _value("img", F32, None), _value("rev", F32, None)],
        inits, opset=18,
    )  # fmt: skip
    arrays = [
        rng.standard_normal(s).astype(np.float32) for s in [(1, 4, 3, 3), (1, 12, 12), (4, 3, 2)]
    ]
    _check(model, *arrays, compiled=True)
