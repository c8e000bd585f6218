"""transformers' Mixtral and Qwen2-MoE sparse MoE blocks (tiny configs from the zoo), captured
by ember's torch frontend and run expert-parallel on real gloo ranks: equal to eager."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ember.distributed import launch  # noqa: E402


def _run_rank(name: str, chunks: int) -> float:
    import torch.distributed as dist

    from ember.distributed import compile_moe
    from examples.zoo import build

    block = build(name)[0].model.layers[0].mlp
    x = torch.randn(1, 24, 128, generator=torch.Generator().manual_seed(dist.get_rank()))
    got = compile_moe(block, x, chunks=chunks)(x)
    with torch.no_grad():
        want = block(x)
    return float((got - want).abs().max())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "world", "chunks"), [
    ("mixtral", 2, 1), ("mixtral", 2, 3), ("qwen2_moe", 2, 2), ("mixtral", 4, 2),
])  # fmt: skip
def test_expert_parallel_block_matches_eager(name: str, world: int, chunks: int):
    errors = launch(_run_rank, world, name, chunks, timeout=300.0)
    assert max(errors) < 1e-5
