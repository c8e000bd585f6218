"""`Matmul`: CPU schedule for matmul/dense/batch-matmul with its fused prologue and epilogue.

The one reduction block, `C[s, i, j] += A[s, i, k] * B[s, k, j]` in any layout and with any batch
broadcast, is normalized to those three 3-D buffers (batch dims of A alone fold into i). Then:

    parallel for tile in (s, j-tiles, i-tiles):       # i innermost: the B panel stays in cache;
                                                       # balanced between cores (codegen/balance.py)
        acc[mr, nr] = 0                                # registers: mr x nr/lanes vectors
        for k: for ii (unrolled): for jj (vectorized): acc[ii, jj] += A[i, k] * B[k, j]
        C[i, j] = epilogue(acc)                        # bias, activation, residual, cast

B is read in place when j is its contiguous axis or when it comes packed in [j / nr, k, nr]
panels (`packed_matmul`: codegen packs constant weights once, at compile time); otherwise
(`x @ w.T`, `q @ k.T`) it is first copied to [s, k, j] or packed panels, which costs one pass
over B against M passes in the kernel.
"""

from __future__ import annotations

from typing import Any

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import get_root_block
from tvm.s_tir.dlight.gpu.matmul import IterKind, IterTrait, make_iter_fusion_index_map
from tvm.target import Target
from tvm.tirx.analysis import undefined_vars

from ember.codegen.balance import BALANCE, CHUNK_FMAS, chunk_tiles, worth_balancing
from ember.codegen.cpu_elementwise import schedule_spatial_block
from ember.codegen.cpu_rule import CPURule, extent, vector_lanes

__all__ = ["Matmul", "matmul_traits", "panel_width"]

_S, _I, _J, _K = IterKind.kIter_S, IterKind.kIter_I, IterKind.kIter_J, IterKind.kIter_K

# Register tiles: MR rows x NR_VECTORS vectors of accumulators. 8 x 2 (16 of AVX-512's 32 zmm)
# fits static row counts closely (M = 7 is one 7-row tile). A symbolic M (a dynamic batch) is
# padded to whole tiles anyway, and there the wider 6 x 4 (24 accumulators; 10 loads per 24 FMAs
# instead of per 16) ran the TreeLSTM node GEMMs of benchmarks/autobatch.py (1-438 rows) 7%
# faster; on static shapes it was no faster, and 2.4 vs 1.6 ms at M = 7. The packed weight's
# panel width picks the tile (codegen/pack_weights.py packs wide for a symbolic M).
MR = 8
NR_VECTORS = 2
WIDE_MR = 6
WIDE_NR_VECTORS = 4
# B is packed into [s, j / nr, k, nr] panels when it is reused by at least this many rows: a
# strided panel thrashes L1 (rows 4 KiB apart share cache sets), a packed one streams.
PACK_MIN_ROWS = 16


class Matmul(CPURule):
    """Register-tiled, vectorized, parallel matmul with the epilogue fused into the tile store."""

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        main = _single_reduction(sch)
        if main is None:
            return None
        prologue = _a_prologue(sch, main)
        _inline_producers(sch, main, keep=prologue)
        stmt = sch.get(main)
        traits = matmul_traits(stmt)
        if traits is None:
            return None
        a_traits, b_traits, c_traits, block_traits = traits
        j_vars = {
            iv.var for iv, t in zip(stmt.iter_vars, block_traits, strict=True) if t.kind == _J
        }
        if not _innermost_in(stmt.writes[0], j_vars):
            return None  # C's contiguous axis is not B's column axis: vectorizing j would scatter
        lanes = vector_lanes(target, str(stmt.writes[0].source.dtype))
        panel = _packed_panel(stmt.reads[1], j_vars)
        b_contiguous = panel is not None or _innermost_in(stmt.reads[1], j_vars)

        a_copy = sch.reindex(main, ("read", 0))
        b_copy = sch.reindex(main, ("read", 1))
        c_copy = sch.reindex(main, ("write", 0))
        sch.transform_layout(
            a_copy, ("write", 0), make_iter_fusion_index_map(a_traits, [_S, _I, _K])
        )
        sch.transform_layout(
            b_copy, ("write", 0), make_iter_fusion_index_map(b_traits, [_S, _K, _J])
        )
        sch.transform_layout(
            c_copy, ("read", 0), make_iter_fusion_index_map(c_traits, [_S, _I, _J])
        )
        sch.transform_block_layout(main, make_iter_fusion_index_map(block_traits, [_S, _I, _J, _K]))
        mr, nr = _tile_shape(sch, main, lanes, panel)
        ragged_i, ragged_j = _ragged(sch, main, mr, nr)
        pack = ragged_j or not b_contiguous or (panel is None and _worth_packing(sch, main))
        if ragged_i or ragged_j:
            # tiles never straddle the edge: no masks in the kernel, and the epilogue fold below
            # sees whole tiles (folding it into a predicated store loses the column bound)
            sch.pad_einsum(main, [1, mr, nr, 1])
        done = set()
        if ragged_i and not isinstance(extent(sch, sch.get_loops(main)[1]), int):
            # a symbolic M (a dynamic batch): A is copied once into its zero-padded buffer, else
            # every A load in the inner loop checks its row against M
            a_pad = _producer_of(sch, main, 0)
            _inline_producers(sch, a_pad)
            done.add(sch.get(a_pad).name_hint)
            schedule_spatial_block(sch, a_pad, target)
        if pack:
            b_name = sch.get(b_copy).name_hint
            b_pack = _producer_of(sch, main, 1)
            if sch.get(b_pack).name_hint != b_name:
                sch.compute_inline(b_copy)  # into its padded copy, which becomes the packed one
            sch.transform_layout(b_pack, ("write", 0), lambda s, k, j: (s, j // nr, k, j % nr))
            done.add(sch.get(b_pack).name_hint)
            schedule_spatial_block(sch, b_pack, target)
        _inline_producers(sch, main, keep=done | prologue)  # A's copies, B's if read in place

        tile = _tile(sch, main, mr, nr, lanes)
        store = sch.cache_write(main, 0, "local")
        sch.reverse_compute_at(store, tile, preserve_unit_loops=True)
        _inline_consumers(sch, store)
        _vectorize_tile(sch, store, lanes)
        init = sch.decompose_reduction(main, sch.get_loops(main)[1])
        _vectorize_tile(sch, init, lanes)
        done |= {sch.get(block).name_hint for block in (main, init, store)}
        for block in sch.get_child_blocks(get_root_block(sch)):
            if sch.get(block).name_hint not in done:  # an epilogue that could not be folded
                schedule_spatial_block(sch, block, target)
        return sch


def _single_reduction(sch: s_tir.Schedule) -> Any | None:
    """The function's only reduction block when every other block is spatial."""
    blocks = sch.get_child_blocks(get_root_block(sch))
    found = None
    for block in blocks:
        kinds = {iv.iter_type for iv in sch.get(block).iter_vars}
        if tirx.IterVar.CommReduce in kinds:
            if found is not None or kinds - {tirx.IterVar.CommReduce, tirx.IterVar.DataPar}:
                return None
            found = block
        elif kinds - {tirx.IterVar.DataPar}:
            return None
    return found


def _a_prologue(sch: s_tir.Schedule, main: Any) -> set[str]:
    """The blocks computing A from several buffers (a gather or concat that codegen/lower.py
    lowered into the matmul's function) and their producers. They are folded into A's padded
    copy or stay loops of their own, never the inner loop: that would cost an index load or a
    select per FMA, and the trait analysis needs A read from one buffer."""
    try:
        block = _producer_of(sch, main, 0)
    except ValueError:  # A is an input
        return set()
    while len(sch.get(block).reads) == 1:  # a cast or transpose on the way
        producers = sch.get_producers(block)
        if len(producers) != 1:
            return set()
        block = producers[0]
    found, stack = set(), [block]
    while stack:
        block = stack.pop()
        found.add(sch.get(block).name_hint)
        stack.extend(sch.get_producers(block))
    return found


def _producer_of(sch: s_tir.Schedule, block: Any, read: int) -> Any:
    buffer = sch.get(block).reads[read].source
    for producer in sch.get_producers(block):
        if any(w.source.same_as(buffer) for w in sch.get(producer).writes):
            return producer
    raise ValueError(f"no producer writes {buffer.name}")


def _innermost_in(region: Any, variables: set[Any]) -> bool:
    """Whether the buffer region's last index is a plain loop variable from `variables`."""
    index = region.region[-1].min
    return isinstance(index, tirx.Var) and index in variables


def _packed_panel(region: Any, variables: set[Any]) -> int | None:
    """p when B is read as B[..., j // p, k, j % p] (`packed_matmul`'s panels), else None."""
    index = region.region[-1].min
    if not isinstance(index, tirx.FloorMod) or not isinstance(index.b, tirx.IntImm):
        return None
    return index.b.value if isinstance(index.a, tirx.Var) and index.a in variables else None


def panel_width(target: Target, *, symbolic_rows: bool = False) -> int:
    """The columns of the float32 register tile, the panel width of packed weights: wide for a
    matmul whose row count is symbolic."""
    return vector_lanes(target, "float32") * (WIDE_NR_VECTORS if symbolic_rows else NR_VECTORS)


def matmul_traits(block: Any) -> tuple[list[IterTrait], ...] | None:
    """Iter kinds for C[S, I, J] += A[S, I, K] * B[S, K, J] in any layout (dlight's
    `detect_iter_traits`, except that I may be absent: a vector-matrix product)."""
    if len(block.reads) != 2 or len(block.writes) != 1:
        return None
    regions = (block.reads[0].region, block.reads[1].region, block.writes[0].region)
    if any(not _is_one(r.extent) for region in regions for r in region):
        return None
    a_axes, b_axes, c_axes = (
        {v for r in region for v in undefined_vars(r.min)} for region in regions
    )
    traits: dict[Any, IterTrait] = {}
    for iv in block.iter_vars:
        var, dom = iv.var, iv.dom.extent
        if _is_one(dom):
            kind = IterKind.kIter_T
        elif iv.iter_type == tirx.IterVar.DataPar and var in c_axes:
            kind = {(True, True): _S, (True, False): _I, (False, True): _J}.get(
                (var in a_axes, var in b_axes)
            )
        elif iv.iter_type == tirx.IterVar.CommReduce and var in a_axes and var in b_axes:
            kind = _K if var not in c_axes else None
        else:
            kind = None
        if kind is None:
            return None
        traits[var] = IterTrait(kind, dom)
    if not {_J, _K} <= {t.kind for t in traits.values()}:
        return None
    order = [iv.var for iv in block.iter_vars]
    return (
        [traits[v] for v in order if v in a_axes],
        [traits[v] for v in order if v in b_axes],
        [traits[v] for v in order if v in c_axes],
        [traits[v] for v in order],
    )


def _is_one(x: Any) -> bool:
    return isinstance(x, tirx.IntImm) and x.value == 1


def _tile_shape(sch: s_tir.Schedule, main: Any, lanes: int, panel: int | None) -> tuple[int, int]:
    """Register tile (mr rows, nr columns): MR x NR_VECTORS vectors, shrunk to a small static
    M or N, and to one vector when that divides N and two do not (no padding needed). A packed
    B's panel width is the tile width when it divides N (WIDE_MR rows for a wide panel)."""
    _, i, j, _ = sch.get_loops(main)
    m, n = extent(sch, i), extent(sch, j)
    if panel is not None and isinstance(n, int) and n % panel == 0:
        nr = panel
    else:
        nr = lanes * NR_VECTORS
        if isinstance(n, int):
            if n <= nr:
                nr = n
            elif n % nr != 0 and n % lanes == 0:
                nr = lanes
    mr = WIDE_MR if nr == lanes * WIDE_NR_VECTORS else MR
    return (min(m, mr) if isinstance(m, int) else mr), nr


def _ragged(sch: s_tir.Schedule, main: Any, mr: int, nr: int) -> tuple[bool, bool]:
    _, i, j, _ = sch.get_loops(main)
    m, n = extent(sch, i), extent(sch, j)
    return not (isinstance(m, int) and m % mr == 0), not (isinstance(n, int) and n % nr == 0)


def _worth_packing(sch: s_tir.Schedule, main: Any) -> bool:
    m = extent(sch, sch.get_loops(main)[1])
    return not (isinstance(m, int) and m < PACK_MIN_ROWS)


def _tile(sch: s_tir.Schedule, main: Any, mr: int, nr: int, lanes: int) -> Any:
    """Split [s, i, j, k] into (parallel tile loop, k, mr, nr); returns the tile loop."""
    s, i, j, k = sch.get_loops(main)
    io, ii = sch.split(i, [None, mr])
    jo, ji = sch.split(j, [None, nr])
    sch.reorder(s, jo, io, k, ii, ji)
    tile = sch.fuse(s, jo, io)
    sch.parallel(tile)
    fmas = mr * nr * depth if isinstance(depth := extent(sch, k), int) else CHUNK_FMAS
    if worth_balancing(fmas, extent(sch, tile)):  # a tile writes C from A and B: may run twice
        sch.annotate(tile, BALANCE, chunk_tiles(fmas))
    sch.unroll(ii)
    _vectorize_loop(sch, ji, lanes)
    return tile


def _vectorize_loop(sch: s_tir.Schedule, loop: Any, lanes: int) -> None:
    n = extent(sch, loop)
    if n % lanes == 0:
        outer, vector = sch.split(loop, [None, lanes])
        sch.unroll(outer)
        sch.vectorize(vector)
    else:
        sch.unroll(loop)


def _vectorize_tile(sch: s_tir.Schedule, block: Any, lanes: int) -> None:
    """The init/store block of one tile: loops [..., tile, mr, nr]."""
    loops = sch.get_loops(block)
    sch.unroll(loops[-2])
    _vectorize_loop(sch, loops[-1], lanes)


def _inline_producers(sch: s_tir.Schedule, block: Any, keep: set[str] = frozenset()) -> None:
    """Fold spatial producers (casts, transposes, dequantization) into the matmul's reads."""
    for producer in sch.get_producers(block):
        if sch.get(producer).name_hint in keep:
            continue
        try:
            sch.compute_inline(producer)
        except s_tir.ScheduleError:
            continue
        _inline_producers(sch, block, keep)
        return


def _inline_consumers(sch: s_tir.Schedule, block: Any) -> None:
    """Fold the epilogue chain into the tile store; what cannot be folded stays at the root.

    Intermediate epilogue blocks are first inlined forward into their own consumers, so a chain
    with diamonds (gelu reads its input twice) collapses into one block before the backward fold.
    """
    progress = True
    while progress:
        progress = False
        for consumer in _transitive_consumers(sch, block):
            for inline in (sch.compute_inline, sch.reverse_compute_inline):
                try:
                    inline(consumer)
                except s_tir.ScheduleError:
                    continue
                progress = True
                break
            if progress:
                break


def _transitive_consumers(sch: s_tir.Schedule, block: Any) -> list[Any]:
    found: list[Any] = []
    for consumer in sch.get_consumers(block):
        found.append(consumer)
        found.extend(_transitive_consumers(sch, consumer))
    return found
