"""Destination outputs: `main(inputs) -> outputs` becomes `main(inputs, destinations) ->
destinations`, every output written into a tensor the caller passes (one per output, after the
inputs, with the output's shape and dtype) instead of a buffer the VM allocates.

The kernel computing an output writes it in place (`R.call_tir_inplace` on the destination, which
takes the slot of the kernel's own output buffer). Any other output (an input or a constant passed
through, a value returned twice, one output of a multi-output kernel or of a kernel taking
symbolic vars as arguments) is copied into its destination by a small copy kernel.
ember.autobatch passes rows of its arenas, so batched kernels write their results where the next
kernels read them, with no copy in between.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax, te

from ember.errors import CodegenError

__all__ = ["write_into_destinations"]


def write_into_destinations(mod: Any) -> Any:
    """The module with `main` rewritten (see module doc); `main` must be one dataflow block
    returning a tuple (what `codegen.lower.to_relax` makes, after fusion)."""
    main = mod["main"]
    body = main.body
    if len(body.blocks) != 1 or not isinstance(body.blocks[0], relax.DataflowBlock):
        raise CodegenError(
            "destination outputs need a pure graph (main as one dataflow block); this one calls "
            "collectives: build it without destinations"
        )
    (block,) = body.blocks
    bound = {b.var: b for b in block.bindings}
    result = bound.get(body.body)
    if result is None or not isinstance(result.value, relax.Tuple):
        raise CodegenError("destination outputs need main to return a tuple of its outputs")
    outputs = list(result.value.fields)
    call_tir = tvm.ir.Op.get("relax.call_tir")
    destinations = [relax.Var(f"destination{k}", v.ty) for k, v in enumerate(outputs)]
    in_place: dict[Any, Any] = {}  # output var -> its destination, written by its own kernel
    for v, destination in zip(outputs, destinations, strict=True):
        binding = bound.get(v)
        computed = (
            binding is not None
            and isinstance(binding.value, relax.Call)
            and binding.value.op.same_as(call_tir)
            and len(binding.value.args) == 2  # call_tir_inplace takes no symbolic-var args
            and isinstance(v.ty, relax.TensorType)
        )
        if computed and v not in in_place:
            in_place[v] = destination

    builder = relax.BlockBuilder(tvm.IRModule(dict(mod.functions_items())))
    bindings = []
    for binding in block.bindings:
        if binding.var.same_as(result.var):  # the returned tuple: made anew below
            continue
        if binding.var in in_place:
            call = binding.value
            args = list(call.args[1].fields)
            args.append(in_place[binding.var])
            value = relax.op.call_tir_inplace(call.args[0], args, [len(args) - 1], binding.var.ty)
            binding = relax.VarBinding(binding.var, value)
        bindings.append(binding)
    written = []  # what main returns: the destinations, as written
    for k, (v, destination) in enumerate(zip(outputs, destinations, strict=True)):
        if in_place.get(v) is destination:
            written.append(v)
            continue
        copied = relax.DataflowVar(f"copied{k}", v.ty)
        copy = _copy_kernel(builder, v.ty, k)
        value = relax.op.call_tir_inplace(copy, [v, destination], [1], v.ty)
        bindings.append(relax.VarBinding(copied, value))
        written.append(copied)
    new_result = relax.Var("destinations", result.var.ty)
    bindings.append(relax.VarBinding(new_result, relax.Tuple(written)))
    seq = relax.SeqExpr([relax.DataflowBlock(bindings)], new_result)
    function = relax.Function(
        [*main.params, *destinations], seq, main.ret_ty, main.is_pure, main.attrs
    )
    builder.update_func(builder.get().get_global_var("main"), function)
    return builder.get()


def _copy_kernel(builder: Any, ty: Any, k: int) -> Any:
    """A PrimFunc (src, dst) copying a tensor of type `ty` (symbolic dims become its own vars),
    added to the builder's module; its global var."""
    if not isinstance(ty, relax.TensorType):
        raise CodegenError(f"output {k} is not a tensor ({ty}); destination outputs need tensors")
    shape = [
        d if isinstance(d, tvm.tirx.IntImm) else tvm.tirx.Var(f"n{i}", "int64")
        for i, d in enumerate(ty.shape.values)
    ]
    src = te.placeholder(shape, ty.dtype, "src")
    dst = te.compute(shape, lambda *i: src(*i), name="dst")
    func = te.create_prim_func([src, dst]).without_attr("global_symbol")  # the module names it
    return builder.add_func(func, "copy_output")  # one per distinct type (add_func dedups)
