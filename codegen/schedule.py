"""Default schedules: dlight rules that give fast code without tuning."""

from __future__ import annotations

from typing import Any

__all__ = ["default_schedule_rules"]


def default_schedule_rules(target: dict[str, Any]) -> list[Any]:
    """The dlight rules applied to every fused function, in priority order (first match wins)."""
    from tvm.s_tir import dlight

    if target["kind"] == "llvm":
        from ember.codegen.cpu_elementwise import Elementwise
        from ember.codegen.cpu_fallback import Fallback
        from ember.codegen.cpu_fused_quantize import FusedQuantize
        from ember.codegen.cpu_gemv import GEMV
        from ember.codegen.cpu_int8_gemm import Int8Gemm
        from ember.codegen.cpu_matmul import Matmul
        from ember.codegen.cpu_quant_gemm import Int4Gemm
        from ember.codegen.cpu_reduction import RowReduction

        # GEMV takes matrix-vector products with a contiguous reduction (x @ W.T, M=1), which
        # Matmul would first transpose; dlight's cpu.Reduction is slower here than RowReduction.
        # quantized kernels first: they would otherwise match the generic rules
        return [
            FusedQuantize(),
            Int8Gemm(),
            Int4Gemm(),
            GEMV(),
            Matmul(),
            Elementwise(),
            RowReduction(),
            Fallback(),
        ]
    gpu = dlight.gpu
    return [gpu.Matmul(), gpu.GEMV(), gpu.Reduction(), gpu.GeneralReduction(), gpu.Fallback()]
