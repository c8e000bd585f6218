"""`ember.compile` as users call it: function and decorator forms, torch and numpy in/out,
lazy compiles, symbolic dims without recompiling, and clear errors for bad calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.errors import EmberError, InputError


class _MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(16, 32)
        self.down = torch.nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = torch.nn.functional.gelu(self.up(x))
        return self.down(h), {"hidden": h}


@pytest.fixture(scope="module")
def mlp() -> _MLP:
    torch.manual_seed(0)
    return _MLP().eval()


def test_compiled_module_matches_eager_with_the_same_output_structure(mlp):
    x = torch.randn(4, 16)
    cm = ember.compile(mlp, example_inputs=(x,), target="llvm")
    out, extra = cm(x)
    want, want_extra = mlp(x)
    assert isinstance(out, torch.Tensor)
    assert set(extra) == {"hidden"}
    torch.testing.assert_close(out, want.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(extra["hidden"], want_extra["hidden"].detach(), rtol=1e-4, atol=1e-5)


def test_numpy_in_numpy_out(mlp):
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    cm = ember.compile(mlp, example_inputs=(torch.from_numpy(x),))
    out, _ = cm(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(
        out, mlp(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-4, atol=1e-5
    )


def test_decorator_forms_compile_lazily_once_per_signature():
    @ember.compile
    def gate(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * y + 1

    @ember.compile(target="llvm")
    def scale(x: torch.Tensor) -> torch.Tensor:
        return (x * 2).sum(-1)

    x, y = torch.randn(3, 5), torch.randn(3, 5)
    torch.testing.assert_close(gate(x, y), torch.sigmoid(x) * y + 1)
    torch.testing.assert_close(scale(x), (x * 2).sum(-1))
    assert gate.compile_count == 1
    gate(torch.randn(3, 5), torch.randn(3, 5))
    assert gate.compile_count == 1


def test_dynamic_sequence_length_compiles_once(mlp):
    x = torch.randn(2, 6, 16)
    cm = ember.compile(mlp, example_inputs=(x,), dynamic={0: {1: "seq"}})
    for length in (3, 17, 40):
        xs = torch.randn(2, length, 16)
        torch.testing.assert_close(cm(xs)[0], mlp(xs)[0].detach(), rtol=1e-4, atol=1e-5)
    assert cm.compile_count == 1


def test_new_shapes_recompile_once_with_symbolic_dims(mlp):
    cm = ember.compile(mlp)
    for batch in (2, 5, 9, 12):
        cm(torch.randn(batch, 16))
    assert cm.compile_count == 2  # static first, then one symbolic build serves every later batch


def test_wrong_calls_raise_input_errors(mlp):
    cm = ember.compile(
        mlp, example_inputs=(torch.randn(2, 6, 16),), dynamic={0: {1: ("seq", 2, 64)}}
    )
    with pytest.raises(InputError, match=r"expected 1 inputs \(x: f32\[2,seq,16\]\), got 2"):
        cm(torch.zeros(2, 6, 16), torch.zeros(2, 6, 16))
    with pytest.raises(
        InputError, match=r"input 'x' \(expected f32\[2,seq,16\]\): axis 2 is 15 but must be 16"
    ):
        cm(torch.zeros(2, 6, 15))
    with pytest.raises(InputError, match=r"got dtype float64; cast it to float32"):
        cm(torch.zeros(2, 6, 16, dtype=torch.float64))
    with pytest.raises(InputError, match=r"dim seq=65 violates its constraint seq in \[2, 64\]"):
        cm(np.zeros((2, 65, 16), np.float32))
    assert cm.compile_count == 1


def test_compiling_something_else_is_an_ember_error():
    with pytest.raises(EmberError, match=r"takes a torch nn\.Module or function, or an ONNX"):
        ember.compile(42)
