"""Default schedules: dlight rules that give fast code without tuning."""

from __future__ import annotations

from typing import Any

__all__ = ["default_schedule_rules"]


def default_schedule_rules(target: dict[str, Any]) -> list[Any]:
    """The dlight rules applied to every fused function, in priority order."""
    from tvm.s_tir import dlight

    if target["kind"] == "llvm":
        return [dlight.cpu.GEMV(), dlight.cpu.Reduction()]
    return [dlight.gpu.Matmul(), dlight.gpu.GEMV(), dlight.gpu.Reduction(), dlight.gpu.GeneralReduction(),
            dlight.gpu.Fallback()]  # fmt: skip
