"""How many threads TVM's CPU kernels run on.

TVM sizes its thread pool from TVM_NUM_THREADS, else OMP_NUM_THREADS, else, on x86, *half* the
logical CPUs: it assumes two hyper-threads per core. On a machine without hyper-threading (this
2-core VM, most cloud vCPU slices with SMT hidden) that runs every kernel on half the cores.
ember sets TVM_NUM_THREADS to the physical cores this process may run on, before TVM's pool
starts (TVM reads the variable when a thread makes its first parallel launch), unless the user
set either variable.
"""

from __future__ import annotations

import os
from functools import cache

__all__ = ["physical_cores", "size_thread_pool"]

_TOPOLOGY = "/sys/devices/system/cpu/cpu{}/topology/{}"


def physical_cores() -> int:
    """The distinct cores (package, core id) among the CPUs this process may run on."""
    cpus = (
        os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    )
    cores = set()
    for cpu in cpus:
        try:
            with (
                open(_TOPOLOGY.format(cpu, "physical_package_id")) as package,
                open(_TOPOLOGY.format(cpu, "core_id")) as core,
            ):
                cores.add((package.read().strip(), core.read().strip()))
        except OSError:  # no sysfs topology (containers, other OSes): count logical CPUs
            return len(cpus)
    return len(cores) or 1


@cache
def size_thread_pool() -> None:
    """Set TVM_NUM_THREADS to the physical cores unless TVM_NUM_THREADS or OMP_NUM_THREADS is set
    (once per process; call it before the first kernel runs)."""
    if "TVM_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
        os.environ["TVM_NUM_THREADS"] = str(physical_cores())
