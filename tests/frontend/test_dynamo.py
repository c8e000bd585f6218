"""torch.compile(backend="ember"): the entry point resolves, outputs match eager across graph
breaks and dynamic shapes (with a bounded number of ember builds), and misuse is a clear error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import ember.api
from ember.errors import EmberError
from ember.frontend import dynamo


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[ember.api.Program]:
    """Every program the backend builds, in order."""
    built: list[ember.api.Program] = []
    compile_graph = ember.api.compile_graph

    def counting(*args, **kwargs):
        built.append(compile_graph(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(ember.api, "compile_graph", counting)
    return built


class _MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(16, 32)
        self.norm = torch.nn.LayerNorm(32)
        self.down = torch.nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.gelu(self.norm(self.up(x))))


class _Branchy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.b = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        if x.sum() > 0:  # data-dependent Python branch: Dynamo breaks the graph here
            return torch.relu(self.b(h)) * 2
        return torch.sigmoid(self.b(h)) - 1


class _Flatten(torch.nn.Module):
    """Reads sizes off its input, so Dynamo passes them as SymInt arguments once dynamic."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq = x.shape[0], x.shape[1]
        y = self.proj(x.reshape(batch * seq, -1)).reshape(batch, seq, 5)
        return y.softmax(-1) + torch.arange(seq, dtype=torch.float32)[:, None]


def _model(cls: type[torch.nn.Module]) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def test_entry_point_names_the_backend():
    from torch._dynamo.backends.registry import list_backends, lookup_backend

    assert "ember" in list_backends()
    assert lookup_backend("ember") is dynamo.backend


@torch.no_grad()
def test_mlp_matches_eager(builds):
    model = _model(_MLP)
    compiled = torch.compile(model, backend="ember")
    x = torch.randn(4, 16)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    assert len(builds) == 1


@torch.no_grad()
def test_graph_break_subgraphs_are_each_compiled(builds):
    model = _model(_Branchy)
    compiled = torch.compile(model, backend="ember")
    x = torch.randn(3, 8)
    for sample in (x.abs(), -x.abs(), x.abs() + 1):
        torch.testing.assert_close(compiled(sample), model(sample), rtol=1e-4, atol=1e-5)
    # the prefix ending in the branch condition, then one graph per branch taken
    assert len(builds) == 3


@torch.no_grad()
def test_dynamic_batch_compiles_twice_for_many_sizes(builds):
    model = _model(_MLP)
    compiled = torch.compile(model, backend="ember")
    for batch in (2, 3, 5, 9, 17):
        x = torch.randn(batch, 16)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    # static first; Dynamo then marks the batch dynamic, and one build serves every later size
    assert len(builds) == 2
    assert builds[1].graph.symbol_ranges  # the second build is symbolic


@torch.no_grad()
def test_symint_arguments_are_read_off_tensor_shapes(builds):
    model = _model(_Flatten)
    compiled = torch.compile(model, backend="ember")
    for batch, seq in ((2, 3), (3, 5), (4, 7), (6, 2)):
        x = torch.randn(batch, seq, 12)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    assert len(builds) == 2


def test_in_place_updates_of_inputs_are_copied_back():
    def bump(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x.add_(1)
        y[0].mul_(2)
        return x * y.sum()

    compiled = torch.compile(bump, backend="ember")
    x, y = torch.zeros(3), torch.ones(2, 2)
    eager_x, eager_y = x.clone(), y.clone()
    for _ in range(2):
        torch.testing.assert_close(compiled(x, y), bump(eager_x, eager_y))
        torch.testing.assert_close((x, y), (eager_x, eager_y))


def test_dynamic_python_numbers_are_unsupported():
    def scale(x: torch.Tensor, n: int) -> torch.Tensor:
        return x * n + n

    compiled = torch.compile(scale, backend="ember")
    compiled(torch.randn(3), 2)
    with pytest.raises(Exception, match="a dynamic Python number that no tensor input's shape"):
        compiled(torch.randn(3), 3)  # Dynamo now makes n a SymInt that no shape carries


@torch.no_grad()
def test_options_reach_ember(builds):
    model = _model(_MLP)
    compiled = torch.compile(model, backend="ember", options={"cache": False})
    x = torch.randn(2, 16)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    assert builds[0].cache_key is None


def test_recording_gradients_is_a_clear_error():
    compiled = torch.compile(_model(_MLP), backend="ember")
    with pytest.raises(Exception, match="inference-only") as info:
        compiled(torch.randn(2, 16))
    assert isinstance(info.value.__cause__ or info.value.inner_exception, EmberError)


def test_unknown_options_and_modes_are_rejected():
    x = torch.randn(2, 16)
    with torch.no_grad(), pytest.raises(Exception, match=r"unknown options \['fast'\]"):
        torch.compile(_model(_MLP), backend="ember", options={"fast": True})(x)
    torch._dynamo.reset()
    with torch.no_grad(), pytest.raises(Exception, match="ember has no modes"):
        torch.compile(_model(_MLP), backend="ember", mode="max-autotune")(x)


@torch.no_grad()
def test_tiny_gpt2_matches_eager(builds):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_embd=128, n_layer=2, n_head=4, vocab_size=512, n_positions=64,
        use_cache=False, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    compiled = torch.compile(model, backend="ember")
    ids = torch.randint(0, 512, (2, 16))
    torch.testing.assert_close(compiled(ids).logits, model(ids).logits, rtol=1e-4, atol=1e-4)
    assert len(builds) == 1
