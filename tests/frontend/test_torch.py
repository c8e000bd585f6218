"""The PyTorch frontend: tiny modules imported through torch.export and run by the reference
interpreter, compared against eager; dynamic dims; the one-shot UnsupportedError; export errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from ember.errors import EmberError, UnsupportedError  # noqa: E402
from ember.frontend.torch import ExportError, from_exported_program, from_fx, import_module  # noqa: E402
from ember.ir import interpret, sym, verify  # noqa: E402
from tests.helpers import assert_rel_close  # noqa: E402


def _check(model, *inputs, dynamic=None, calls=None):
    """Import `model`, then compare the interpreter with eager on `inputs` (and on `calls`)."""
    imported = import_module(model, inputs, dynamic=dynamic)
    verify(imported.graph)
    for args in [inputs, *(calls or [])]:
        with torch.no_grad():
            expected = model(*args)
        got = interpret(imported.graph, *(a.numpy() for a in args))
        flat, _ = torch.utils._pytree.tree_flatten(expected)
        assert len(got) == len(flat)
        for g, e in zip(got, flat, strict=True):
            assert g.dtype == e.numpy().dtype
            assert_rel_close(g, e.numpy())
    return imported


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x))).softmax(-1)


class _Attention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, causal: bool = True) -> None:
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm(x)).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return x + self.out(y.transpose(1, 2).reshape(b, s, d))


def test_mlp_matches_eager():
    imported = _check(_MLP().eval(), torch.randn(4, 16))
    assert imported.graph.name == "_MLP"
    assert imported.graph.input_names == ("x",)
    assert imported.graph.op_histogram()["matmul"] == 2


def test_attention_with_sdpa_matches_eager():
    imported = _check(_Attention().eval(), torch.randn(2, 6, 32))
    names = imported.graph.op_histogram()
    assert names["softmax"] == 1
    assert names["layer_norm"] == 1


def test_sdpa_with_float_mask_and_gqa():
    def attend(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True, scale=0.3)

    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    _check(attend, q, k, v, torch.randn(5, 7))


def test_embedding_and_layer_norm_keep_ember_ops():
    model = nn.Sequential(nn.Embedding(50, 16), nn.LayerNorm(16), nn.SiLU()).eval()
    imported = _check(model, torch.randint(0, 50, (2, 7)))
    assert {"gather", "layer_norm", "silu"} <= set(imported.graph.op_histogram())


def test_locations_point_at_model_code():
    imported = import_module(_MLP().eval(), (torch.randn(4, 16),))
    locs = {str(node.loc) for node in imported.graph.nodes if node.loc is not None}
    assert any(loc.startswith("test_torch.py:") for loc in locs), locs


def test_dynamic_batch_and_seq_become_named_symbols():
    model = _Attention().eval()
    imported = _check(
        model,
        torch.randn(2, 6, 32),
        dynamic={0: {0: "batch", 1: ("seq", 2, 64)}},
        calls=[(torch.randn(3, 9, 32),), (torch.randn(1, 2, 32),)],
    )
    (x,) = imported.graph.inputs
    assert x.type.shape == (sym("batch"), sym("seq"), 32)
    assert imported.graph.symbol_ranges["seq"] == (2, 64)


def test_dynamic_dims_in_view_arithmetic():
    def fold(x):
        return x.reshape(x.shape[0] * 2, -1).sum(-1) + x.shape[1]

    _check(fold, torch.randn(4, 6), dynamic={"x": {0: "n"}}, calls=[(torch.randn(7, 6),)])


def test_type_promotion_is_explicit():
    def mixed(i, f, h):
        return (i + 1.5) * f, i // 2, (i > 2) & (h < 0), h + f, i / 3, torch.where(i > 1, h, 0.0)

    i = torch.randint(-5, 5, (3, 4))
    f = torch.randn(3, 4)
    h = torch.randn(3, 4, dtype=torch.float64)
    imported = _check(mixed, i, f, h)
    assert "cast" in imported.graph.op_histogram()


def test_torch_functions():
    def functions(x, idx):
        y = torch.cumsum(x, dim=1) + x.amax(dim=0, keepdim=True)
        z = torch.tril(x[:, :4]) @ x[:4, :4].T.clamp(-0.5, 0.5)
        values, indices = torch.topk(x, 2, dim=-1)
        return (
            y,
            z,
            values,
            indices,
            x[idx],
            x[:, 1::2].flip(0),
            x.var(dim=1),
            torch.cat([x, -x], 1),
        )

    _check(functions, torch.randn(5, 6), torch.tensor([4, 0, -1]))


def test_advanced_indexing_and_index_put():
    def index(x, rows, cols, src):
        out = x[rows[:, None], cols[None, :]]
        put = torch.zeros(6, dtype=torch.long).index_put((rows,), torch.arange(3))
        return out, put, torch.gather(x, 1, src), x[:, cols]

    rows, cols = torch.tensor([2, 0, 5]), torch.tensor([1, 3])
    _check(index, torch.randn(6, 4), rows, cols, torch.randint(0, 4, (6, 2)))


def test_output_spec_rebuilds_structure():
    def pair(x):
        return {"double": x * 2, "parts": (x + 1, x.sum())}

    imported = _check(pair, torch.randn(3))
    flat = interpret(imported.graph, np.ones(3, np.float32))
    rebuilt = torch.utils._pytree.tree_unflatten(
        [torch.from_numpy(a) for a in flat], imported.out_spec
    )
    assert set(rebuilt) == {"double", "parts"}
    assert rebuilt["parts"][1].item() == 3.0


def test_parameters_become_constants_bf16_too():
    model = nn.Linear(8, 4).to(torch.bfloat16).eval()
    imported = import_module(model, (torch.randn(2, 8, dtype=torch.bfloat16),))
    dtypes = {a.dtype.name for a in imported.graph.consts.values()}
    assert dtypes == {"bfloat16"}
    got = interpret(
        imported.graph, torch.ones(2, 8).to(torch.bfloat16).float().numpy().astype(dtypes.pop())
    )
    with torch.no_grad():
        want = model(torch.ones(2, 8, dtype=torch.bfloat16)).float().numpy()
    np.testing.assert_allclose(got[0].astype(np.float32), want, rtol=2e-2, atol=2e-2)


def _line(text: str) -> int:
    source = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(source, 1) if text in line and "_line" not in line)


class _TinyNet(nn.Module):
    def forward(self, x):
        nz = torch.nonzero(x > 0)
        y = torch.erfinv(x.clamp(-0.5, 0.5))
        return nz.sum() + torch.erfinv(y).sum() + torch.fft.rfft(x).abs().sum()


def test_unsupported_ops_are_all_listed_once():
    with pytest.raises(UnsupportedError) as info:
        import_module(_TinyNet(), (torch.randn(4, 4),))
    message = str(info.value)
    assert "PyTorch ops have no converter (model: _TinyNet)" in message
    assert message.startswith("3 PyTorch ops have no converter (model: _TinyNet)")
    lines = message.splitlines()
    assert lines[1].split() == [
        "aten.nonzero",
        "x1",
        "first",
        "at",
        f"test_torch.py:{_line('nonzero')}",
    ]
    assert lines[2].split() == [
        "aten.erfinv",
        "x2",
        "first",
        "at",
        f"test_torch.py:{_line('erfinv(x')}",
    ]
    assert lines[3].split()[:2] == ["aten._fft_r2c", "x1"]


def test_data_dependent_control_flow_is_an_export_error():
    def branchy(x):
        return x * 2 if x.sum() > 0 else x - 1

    with pytest.raises(ExportError, match=r"torch\.export failed on branchy") as info:
        import_module(branchy, (torch.randn(3),))
    assert "hint:" in str(info.value)
    assert isinstance(info.value, EmberError)


def test_from_exported_program_and_from_fx():
    model = _MLP().eval()
    x = torch.randn(4, 16)
    with torch.no_grad():
        want = model(x).numpy()
    ep = torch.export.export(model, (x,), strict=False)
    got = interpret(from_exported_program(ep, name="mlp").graph, x.numpy())
    assert_rel_close(got[0], want)
    traced = torch.fx.symbolic_trace(model)
    got = interpret(from_fx(traced, (x,)).graph, x.numpy())
    assert_rel_close(got[0], want)


def test_in_place_updates_are_refused_with_a_fix():
    class Counter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("seen", torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.add_(1)
            return x * 2

    with pytest.raises(
        UnsupportedError, match=r"Counter updates seen in place; .* Return the new value"
    ):
        import_module(Counter(), (torch.ones(2),))
