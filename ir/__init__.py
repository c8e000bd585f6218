"""ember's graph IR: typed immutable SSA graphs, ops, builder, rewriting, verification."""

from ember.ir import ops
from ember.ir.builder import Builder
from ember.ir.graph import Graph, Loc, Node, Value
from ember.ir.interpreter import concrete, interpret
from ember.ir.op import OPS, Op, register_op
from ember.ir.printer import print_graph
from ember.ir.rewrite import rewrite
from ember.ir.serialize import from_json, to_json
from ember.ir.signature import bind_symbols
from ember.ir.types import Dim, DType, TensorType, sym
from ember.ir.verify import verify

__all__ = [
    "OPS",
    "Builder",
    "DType",
    "Dim",
    "Graph",
    "Loc",
    "Node",
    "Op",
    "TensorType",
    "Value",
    "bind_symbols",
    "concrete",
    "from_json",
    "interpret",
    "ops",
    "print_graph",
    "register_op",
    "rewrite",
    "sym",
    "to_json",
    "verify",
]
