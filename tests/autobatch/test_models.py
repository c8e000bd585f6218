"""Dynamic models run batched by ember.autobatch equal eager (1e-5): TreeLSTM (recursion), an
if/else on a computed value (replay, ghost ops), a variable-length RNN (loop, taint)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

import ember.autobatch as ab
from ember.autobatch.kernel import ArgKind, Inline
from tests.autobatch.models import branch_program, random_tree, rnn_program, treelstm_program


def _assert_equal(batched: list[Any], eager: list[Any]) -> None:
    assert len(batched) == len(eager)
    for got, want in zip(batched, eager, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def treelstm() -> Any:
    return treelstm_program(16)


def _trees(n: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    return [random_tree(rng.randint(3, 9), rng) for _ in range(n)]


def test_treelstm_matches_eager(treelstm: Any) -> None:
    _, _, encode = treelstm
    trees = _trees(6, 0)
    stats = ab.Stats()
    outs = ab.run(encode, trees, stats=stats)
    with torch.no_grad():
        _assert_equal(outs, [encode(t) for t in trees])
    assert isinstance(outs[0], tuple)
    assert outs[0][0].shape == (1, 16)
    assert stats.calls == sum(_size(t) for t in trees)  # every leaf and node call, once
    assert stats.rounds == 1
    assert stats.launches < stats.calls
    # one launch per (block, depth): leaves all at depth 0, node depths 1..max
    assert stats.launches == 1 + max(_depth(t) for t in trees)
    # nodes over two leaves (depth 1) compute the leaves again from their tokens (inlined: the
    # leaf only looks rows up); leaves and the other nodes write into one arena per output
    # signature, so every other child argument is read in place through indices; only the
    # Python-made tokens are uploaded, once, by the leaf launch: the inlined leaves read theirs
    # (once per side) in place from that batch
    leaves = sum(_leaves(t) for t in trees)
    nodes, over_leaves = sum(_size(t) for t in trees) - leaves, sum(_over_leaves(t) for t in trees)
    assert stats.rows_inlined == 4 * over_leaves
    assert stats.rows_uploaded == leaves
    assert stats.rows_staged == 0
    assert stats.rows_in_place == 4 * (nodes - over_leaves) + 2 * over_leaves
    assert stats.rows_out == 0  # the kernels write (h, c) into the arenas themselves


def _leaves(tree: Any) -> int:
    return 1 if isinstance(tree, int) else _leaves(tree[0]) + _leaves(tree[1])


def _over_leaves(tree: Any) -> int:
    """Nodes whose children are both leaves."""
    if isinstance(tree, int):
        return 0
    if isinstance(tree[0], int) and isinstance(tree[1], int):
        return 1
    return _over_leaves(tree[0]) + _over_leaves(tree[1])


def _size(tree: Any) -> int:
    return 1 if isinstance(tree, int) else 1 + _size(tree[0]) + _size(tree[1])


def _depth(tree: Any) -> int:
    return 0 if isinstance(tree, int) else 1 + max(_depth(tree[0]), _depth(tree[1]))


def test_block_kernel_reads_inputs_through_gather_indices(treelstm: Any) -> None:
    _, node, _ = treelstm
    graph = node.kernels[(ArgKind.GATHER,) * 4, True].graph
    # per argument: a producer buffer with its own row count, and a [batch] index vector
    shapes = [tuple(map(str, v.type.shape)) for v in graph.inputs]
    assert shapes[:2] == [("rows0", "16"), ("batch",)]
    assert [n.op.name for n in graph.nodes].count("gather") == 4
    assert all(str(v.type.shape[0]) == "batch" for v in graph.outputs)


def test_a_node_over_two_leaves_inlines_them_and_folds_its_linear(treelstm: Any) -> None:
    """The leaf is all lookups, so a node over two leaves computes them in its own kernel from
    the tokens, and fold-table-lookups folds the node's gate Linear into [vocab, 5 * hidden]
    tables: that kernel has no matmul left, the others keep theirs."""
    leaf, node, encode = treelstm
    ab.run(encode, _trees(3, 2))  # every tree has a node over two leaves: its deepest
    assert leaf.lookup_only
    assert not node.lookup_only
    inlined = {k: kernel for (k, _), kernel in node.kernels.items() if k != (ArgKind.GATHER,) * 4}
    (kinds,) = inlined
    leaf_kinds = (ArgKind.GATHER,)  # the tokens, stacked
    assert kinds == tuple(Inline(leaf, slot, leaf_kinds) for slot in (0, 1, 0, 1))
    for kernel, matmuls in ((inlined[kinds], 0), (node.kernels[(ArgKind.GATHER,) * 4, True], 1)):
        (program,) = kernel.programs
        assert [n.op.name for n in program.graph.nodes].count("matmul") == matmuls


def test_leaves_of_an_earlier_round_are_inlined_from_their_tokens_again(treelstm: Any) -> None:
    """Leaves recorded before a read are computed in that round; a node over two of them made
    after it still inlines them, stacking their tokens again (the batch their own launch
    uploaded belonged to the earlier round)."""
    leaf, node, _ = treelstm

    def pair(tokens: tuple[int, int]) -> Any:
        left, right = (leaf(torch.tensor([t])) for t in tokens)
        if left[0].sum() < 1e9:  # reads a value: the leaves run in round 1
            return node(*left, *right)
        return left

    pairs = [(1, 2), (3, 4), (5, 1)]
    stats = ab.Stats()
    outs = ab.run(pair, pairs, stats=stats)
    with torch.no_grad():
        _assert_equal(outs, [pair(p) for p in pairs])
    assert stats.rounds == 2
    assert stats.rows_inlined == 4 * len(pairs)
    assert stats.rows_uploaded == 2 * len(pairs) + 2 * len(pairs)  # once per round


def test_blocks_that_compute_are_not_inlined() -> None:
    """A chain of two Linear layers: the first is not a lookup block, so the second reads its
    rows through gather indices; results equal eager either way."""
    first, second = ab.block(torch.nn.Linear(3, 4), name="first"), ab.block(torch.nn.Linear(4, 2))
    xs = [torch.randn(1, 3, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    stats = ab.Stats()
    outs = ab.run(lambda x: second(first(x)), xs, stats=stats)
    with torch.no_grad():
        _assert_equal(outs, [second(first(x)) for x in xs])
    assert not first.lookup_only
    assert stats.rows_inlined == 0
    assert [k for k, _ in second.kernels] == [(ArgKind.GATHER,)]


@pytest.mark.slow
def test_rnn_loop_matches_eager_and_passes_shared_state_once() -> None:
    cell, run_sequence = rnn_program(3, 8)
    rng = torch.Generator().manual_seed(0)
    seqs = [torch.randn(n, 3, generator=rng) for n in (4, 1, 7, 3, 7)]
    stats = ab.Stats()
    outs = ab.run(run_sequence, seqs, stats=stats)
    with torch.no_grad():
        _assert_equal(outs, [run_sequence(s) for s in seqs])
    assert stats.launches == 7  # one per time step: depth == t
    # taint: at t = 0 every instance passes the same h0, so the kernel takes it once, unbatched
    shared = cell.kernels[(ArgKind.GATHER, ArgKind.SHARED), True].graph
    assert [tuple(map(str, v.type.shape)) for v in shared.inputs] == [
        ("rows0", "3"),
        ("batch",),
        ("1", "8"),
    ]
    assert (ArgKind.GATHER, ArgKind.GATHER) in {k for k, _ in cell.kernels}
    assert stats.shared_args == 1


@pytest.mark.slow
def test_branch_on_data_replays_and_ghosts_align_depths() -> None:
    torch.manual_seed(0)  # the weights decide the branches: both must be taken
    blocks, classify = branch_program(3, 8)
    xs = [torch.randn(1, 3, generator=torch.Generator().manual_seed(i)) for i in range(12)]
    with torch.no_grad():
        eager = [classify(x) for x in xs]
    taken = {bool(blocks[1](blocks[0](x)) > 0) for x in xs}
    assert taken == {True, False}  # both branches are exercised
    with_ghosts, without = ab.Stats(), ab.Stats()
    _assert_equal(ab.run(classify, xs, stats=with_ghosts), eager)
    _assert_equal(ab.run(classify, xs, ghosts=False, stats=without), eager)
    assert with_ghosts.rounds == 2  # the .item() suspended every instance once
    assert with_ghosts.ghosts > 0
    # round 2: deep1+deep2 vs shallow; the head batches once with ghosts, twice without
    head = blocks[-1]
    assert len(head.kernels) == 1
    assert without.launches == with_ghosts.launches + 1


@pytest.mark.slow
def test_ablations_match_eager(treelstm: Any) -> None:
    _, _, encode = treelstm
    trees = _trees(4, 1)
    with torch.no_grad():
        eager = [encode(t) for t in trees]
    for switch in ("coarsen", "taint", "gather", "inline"):
        _assert_equal(ab.run(encode, trees, **{switch: False}), eager)


@pytest.mark.slow
def test_nondeterministic_instance_is_reported() -> None:
    blocks, _ = branch_program(3, 8)
    enc, gate, deep1, _, shallow, _ = blocks
    flips = iter(range(100))

    def unstable(x: torch.Tensor) -> Any:
        h = deep1(x) if next(flips) % 2 else shallow(x)  # a different block on the re-run
        return gate(h).item()

    with pytest.raises(ab.AutobatchError, match="must be deterministic"):
        ab.run(lambda x: unstable(enc(x)), [torch.zeros(1, 3)])


def test_outputs_no_kernel_computes_reach_the_arena() -> None:
    """A block returning its input, and one value twice: the kernel copies those into the arena
    (destination outputs), and values chained through them stay right."""
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(3))
    step = ab.block(lambda x: (x, torch.tanh(x @ weight), torch.tanh(x @ weight)), name="step")

    def chain(x: torch.Tensor) -> Any:
        for _ in range(3):
            kept, y, again = step(x)
            x = y + again - kept
        return kept, y, again

    xs = [torch.randn(1, 4, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    stats = ab.Stats()
    outs = ab.run(chain, xs, stats=stats)
    with torch.no_grad():
        for got, want in zip(outs, [chain(x) for x in xs], strict=True):
            _assert_equal(list(got), list(want))
    assert stats.rows_out == 0  # written by the kernels, none copied by the runtime
    (kernel,) = step.kernels.values()  # the passed-through x and the repeated tanh are copies
    assert "copy_output" in kernel.programs[0].executor.executable.as_text()
