"""Ghost ops: a static pass over the instance function's source. An `if`/`else` whose branches
make different numbers of block calls (fewer than 5 apart) would leave the values that merge
after it at different depths, so instances taking different branches could not batch their
next calls. The pass appends `x = _ghost(x, k)` to the shorter branch for each value `x` it
assigns: a no-op that adds `k` to the value's depth, as if `k` more calls had happened.

Only direct calls of blocks are counted; a branch that returns, loops, or calls another Python
function (which may call blocks) is left alone.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import logging
import textwrap
import types
import weakref
from collections.abc import Callable
from typing import Any

import torch.utils._pytree as pytree

from ember.autobatch.lazy import LazyValue

__all__ = ["MAX_GHOSTS", "add_ghosts", "ghost"]

log = logging.getLogger(__name__)

MAX_GHOSTS = 4  # ACRoBat pads branches that differ by fewer than 5 kernel calls
_GHOST = "__ab_ghost"


def ghost(tree: Any, k: int) -> Any:
    """`tree` with every pending LazyValue's depth raised by `k` (same data, no kernel)."""
    from ember.autobatch.runtime import active_runtime

    runtime = active_runtime()
    if runtime is None:
        return tree

    def pad(v: LazyValue) -> LazyValue:
        depth = v.depth if v.round == runtime.round else -1
        runtime.stats.ghosts += 1
        return LazyValue(v.call, v.slot, v.spec, depth + k, runtime.round)

    if tree.__class__ is LazyValue:
        return pad(tree)
    return pytree.tree_map_only(LazyValue, pad, tree)


class _Pad(ast.NodeTransformer):
    def __init__(self, blocks: set[str], functions: set[str]) -> None:
        self.blocks = blocks
        self.functions = functions  # Python functions in scope: may call blocks
        self.padded = 0

    def _count(self, body: list[ast.stmt]) -> int | None:
        """Block calls in `body`, or None when unknowable or the branch does not fall through."""
        count = 0
        for node in (n for stmt in body for n in ast.walk(stmt)):
            if isinstance(node, ast.Return | ast.Raise | ast.Break | ast.Continue | ast.For
                          | ast.While | ast.Yield | ast.Lambda):  # fmt: skip
                return None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in self.functions:
                    return None
                count += node.func.id in self.blocks
        return count

    def visit_If(self, node: ast.If) -> ast.If:
        self.generic_visit(node)
        then, other = self._count(node.body), self._count(node.orelse)
        if then is None or other is None or not 0 < abs(then - other) <= MAX_GHOSTS:
            return node
        short = node.orelse if then > other else node.body
        names = _assigned(short)
        if not node.orelse:  # no else: pad what the body updates (read, then assigned)
            names = _assigned(node.body) & _read(node.body)
        for name in sorted(names):
            short.append(_ghost_stmt(name, abs(then - other)))
            self.padded += 1
        return node


def _assigned(body: list[ast.stmt]) -> set[str]:
    return {
        n.id
        for stmt in body
        for n in ast.walk(stmt)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def _read(body: list[ast.stmt]) -> set[str]:
    return {
        n.id
        for stmt in body
        for n in ast.walk(stmt)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def _ghost_stmt(name: str, k: int) -> ast.stmt:
    args = [ast.Name(name, ast.Load()), ast.Constant(k)]
    call = ast.Call(ast.Name(_GHOST, ast.Load()), args, [])
    return ast.Assign([ast.Name(name, ast.Store())], call)


def add_ghosts(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` recompiled with ghost ops in its unbalanced branches (or `fn` itself if none); made
    once per function object (it closes over the same cells and globals on every run)."""
    try:
        return _PADDED[fn] or fn
    except (KeyError, TypeError):  # TypeError: not weak-referenceable (a builtin, a partial)
        pass
    padded = _add_ghosts(fn)
    with contextlib.suppress(TypeError):
        _PADDED[fn] = None if padded is fn else padded  # fn as its own value would never die
    return padded


# fn -> its padded twin, or None when it needs no ghost ops
_PADDED: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any] | None] = (
    weakref.WeakKeyDictionary()
)


def _add_ghosts(fn: Callable[..., Any]) -> Callable[..., Any]:
    from ember.autobatch.block import Block

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return fn
    fdef = tree.body[0] if tree.body else None
    if not isinstance(fdef, ast.FunctionDef) or not isinstance(fn, types.FunctionType):
        return fn
    scope = dict(fn.__globals__)
    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True))
    scope.update({name: cell.cell_contents for name, cell in cells.items()})
    blocks = {name for name, v in scope.items() if isinstance(v, Block)}
    functions = {name for name, v in scope.items() if isinstance(v, types.FunctionType)}
    pad = _Pad(blocks, functions)
    pad.visit(fdef)
    if not pad.padded:
        return fn
    fdef.decorator_list = []
    padded = _compile(tree, fdef, fn, cells)
    log.info("%s: %d ghost ops inserted", fn.__name__, pad.padded)
    padded.__ab_ghosts__ = pad.padded  # type: ignore[attr-defined]
    return padded


def _compile(tree: ast.Module, fdef: ast.FunctionDef, fn: types.FunctionType,
             cells: dict[str, Any]) -> types.FunctionType:  # fmt: skip
    """Compile the rewritten def inside a function whose locals are fn's free variables, so the
    new code closes over the very same cells."""
    outer = ast.FunctionDef(
        name="__ab_outer",
        args=ast.arguments([], [ast.arg(n) for n in cells], None, [], [], None, []),
        body=[fdef, ast.Return(ast.Name(fdef.name, ast.Load()))],
        decorator_list=[],
        returns=None,
        type_params=[],
    )
    tree.body = [outer]
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, fn.__code__.co_firstlineno - 1)
    code = compile(tree, inspect.getsourcefile(fn) or "<ab.run>", "exec")
    outer_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    inner = next(c for c in outer_code.co_consts if isinstance(c, types.CodeType))
    scope = dict(fn.__globals__)
    scope[_GHOST] = ghost
    closure = tuple(cells[n] for n in inner.co_freevars)
    padded = types.FunctionType(inner, scope, fn.__name__, fn.__defaults__, closure or None)
    padded.__kwdefaults__ = fn.__kwdefaults__
    return padded
