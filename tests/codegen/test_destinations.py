"""Destination outputs: a program built with `destinations=True` writes each output into a tensor
passed after the inputs (kernels in place, copies for values no kernel computes), touches nothing
else of the caller's memory, checks the destinations like inputs (and refuses one it could only
copy), caches apart from a plain build, and exports and loads with the destinations in its
signature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ember.api import compile_graph
from ember.codegen.export import graph_metadata
from ember.errors import InputError
from ember.ir import Builder, Graph, interpret, sym
from ember.ir.ops import Add, MatMul, Sigmoid
from ember.runtime import load
from tests.helpers import assert_close


def _graph(rng: np.random.Generator) -> Graph:
    """Outputs: a matmul's epilogue, an input passed through, that epilogue again, a constant."""
    b = Builder()
    x = b.input((sym("n"), 8), "float32", "x")
    w = b.const(rng.standard_normal((8, 16)).astype(np.float32))
    y = b.emit(Sigmoid(), b.emit(Add(), b.emit(MatMul(), x, w), b.const(np.ones(16, np.float32))))
    b.output(y, x, y, b.emit(Sigmoid(), x))
    return b.build()


@pytest.mark.parametrize("rows", [1, 5])
def test_outputs_are_written_into_the_destinations_only(rng, rows):
    g = _graph(rng)
    program = compile_graph(g, destinations=True, cache=False)
    x = rng.standard_normal((rows, 8)).astype(np.float32)
    # destinations are rows of larger buffers, as ember.autobatch's arenas pass them
    arenas = [torch.full((rows + 8, v.type.shape[1]), -7.0) for v in g.outputs]
    views = [a[4 : 4 + rows] for a in arenas]  # 4 rows of 64 bytes or more: aligned
    program.run([x, *views])
    for view, want in zip(views, interpret(g, x), strict=True):
        assert_close(view.numpy(), want)
    for arena in arenas:  # the rows around each destination are untouched
        assert (arena[:4] == -7).all()
        assert (arena[4 + rows :] == -7).all()


def test_destinations_are_checked_like_inputs(rng):
    program = compile_graph(_graph(rng), destinations=True, cache=False)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    short = [np.empty((3, 16), np.float32), np.empty((3, 8), np.float32)]
    with pytest.raises(InputError):
        program.run([x, *short])  # two of four destinations
    wrong = [np.empty((3, 16), np.float32), np.empty((2, 8), np.float32)] * 2
    with pytest.raises(InputError):
        program.run([x, *wrong])  # a destination with another row count
    strided = [torch.empty(3, 32)[:, ::2], torch.empty(3, 8), torch.empty(3, 16), torch.empty(3, 8)]
    with pytest.raises(InputError, match="destination0"):
        program.run([x, *strided])  # a copy would lose what the kernel writes


def test_a_destinations_build_is_cached_apart(rng, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    g = _graph(rng)
    plain = compile_graph(g, cache=True)
    written = compile_graph(g, destinations=True, cache=True)
    assert plain.cache_key != written.cache_key
    assert not written.cache_hit
    again = compile_graph(g, destinations=True, cache=True)
    assert again.cache_hit
    assert again.destinations


def test_exports_with_destinations_in_the_signature(rng, tmp_path):
    g = _graph(rng)
    program = compile_graph(g, destinations=True, cache=False)
    names = [spec.name for spec in graph_metadata(g, program.target, destinations=True).inputs]
    assert names == ["x", "destination0", "destination1", "destination2", "destination3"]
    model = load(program.export(tmp_path / "model.so"))
    assert [spec.name for spec in model.metadata.inputs] == names
