"""GPU targets on a machine without a GPU: CUDA kernels compile with nvcc for the requested arch,
ROCm links AMDGPU code objects, GPU schedules' OpenCL kernels match llvm on PoCL, functions no
dlight rule takes still get threads, and running a GPU build here is a clear error."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from ember.codegen import gpu_schedule  # noqa: E402
from ember.codegen.build import build  # noqa: E402
from ember.codegen.gpu import EM_AMDGPU, EM_CUDA, cuda_toolkit, elf_machine, emit_source  # noqa: E402
from ember.codegen.pocl import check_on_pocl  # noqa: E402
from ember.codegen.rocm_link import bitcode_dir, find_lld  # noqa: E402
from ember.errors import CodegenError, EmberError  # noqa: E402
from ember.frontend.torch import import_module  # noqa: E402
from ember.ir import Builder, Graph  # noqa: E402
from ember.ir.ops import Concat, MatMul, Slice  # noqa: E402
from ember.passes import run_pipeline  # noqa: E402


def _available(probe) -> bool:
    try:
        probe()
    except CodegenError:
        return False
    return True


def _pocl() -> None:
    from ember.codegen.pocl import _pocl_queue

    _pocl_queue()


requires_nvcc = pytest.mark.skipif(not _available(cuda_toolkit), reason="nvcc/CUDA toolkit missing")
requires_rocm_link = pytest.mark.skipif(
    not (_available(find_lld) and _available(bitcode_dir)),
    reason="ld.lld or rocm-device-libs missing (.ci/install-system-deps.sh installs them)",
)
requires_pocl = pytest.mark.skipif(
    not _available(_pocl),
    reason="pyopencl or PoCL missing (.ci/install-system-deps.sh installs them)",
)


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 128), nn.Linear(128, 32)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x))).softmax(-1)


class _Block(nn.Module):
    """A pre-norm transformer block: layer norm, causal SDPA attention, GELU MLP."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(y.transpose(1, 2).reshape(b, s, d))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


def _graph(model: nn.Module, *inputs) -> Graph:
    torch.manual_seed(0)
    optimized, _ = run_pipeline(import_module(model.eval(), inputs).graph)
    return optimized


@pytest.fixture(scope="module")
def mlp() -> Graph:
    torch.manual_seed(0)
    return _graph(_MLP(), torch.randn(4, 64))


@pytest.fixture(scope="module")
def block() -> Graph:
    torch.manual_seed(0)
    return _graph(_Block(), torch.randn(2, 8, 32))


def _kernel_names(source: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, source))


@requires_nvcc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_cuda_kernels_compile_with_nvcc_for_the_arch(mlp, tmp_path: Path, arch: str):
    target = {"kind": "cuda", "arch": arch}
    paths = emit_source(build(mlp, target), target, tmp_path)
    assert [p.name for p in paths] == ["kernels.cu", "kernels.ptx", "kernels.cubin"]
    cu, ptx, cubin = (p.read_bytes() for p in paths)
    kernels = _kernel_names(
        cu.decode(), r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\('
    )
    assert len(kernels) >= 3  # two fused matmuls and the softmax
    assert f".target {arch}".encode() in ptx
    assert _kernel_names(ptx.decode(), r"\.entry (\w+)\(") == kernels
    assert elf_machine(cubin) == EM_CUDA
    e_flags = struct.unpack("<I", cubin[48:52])[0]
    assert (e_flags >> 8) & 0xFF == int(arch.removeprefix("sm_"))  # CUDA 12.8+ cubin layout
    assert all(name.encode() in cubin for name in kernels)


@requires_rocm_link
@pytest.mark.parametrize(("mcpu", "mach"), [("gfx90a", 0x3F), ("gfx942", 0x4C)])
def test_rocm_builds_amdgpu_code_objects(mlp, tmp_path: Path, mcpu: str, mach: int):
    target = {"kind": "rocm", "mcpu": mcpu}
    paths = emit_source(build(mlp, target), target, tmp_path)
    assert [p.name for p in paths] == ["kernels.ll", "kernels.s", "kernels.hsaco"]
    ir, assembly, code = paths[0].read_text(), paths[1].read_text(), paths[2].read_bytes()
    assert assembly.startswith(f'\t.amdgcn_target "amdgcn-amd-amdhsa-hcc-{mcpu}"')
    assert elf_machine(code) == EM_AMDGPU
    assert struct.unpack("<I", code[48:52])[0] & 0xFF == mach  # EF_AMDGPU_MACH
    kernels = _kernel_names(ir, r"define \w+ amdgpu_kernel void @(\w+)\(")
    assert len(kernels) >= 3
    assert all(name.encode() in code for name in kernels)


def test_opencl_source_is_emitted(mlp, tmp_path: Path):
    target = {"kind": "opencl"}
    [path] = emit_source(build(mlp, target), target, tmp_path)
    assert path.name == "kernels.cl"
    assert "__kernel void" in path.read_text()


def test_emit_source_needs_a_gpu_target_and_an_arch(mlp, tmp_path: Path):
    with pytest.raises(
        CodegenError, match="has no device code: emit_source takes cuda, rocm or opencl"
    ):
        emit_source(build(mlp, "llvm"), "llvm", tmp_path)
    built = build(mlp, {"kind": "cuda"})
    with pytest.raises(
        CodegenError, match=re.escape('names no GPU arch: add one, e.g. {"arch": "sm_90"}')
    ):
        emit_source(built, {"kind": "cuda"}, tmp_path)


@requires_pocl
def test_transformer_block_kernels_match_llvm_on_pocl(block):
    checks = check_on_pocl(block)
    assert len(checks) >= 8  # norms, projections, attention matmuls, softmax, MLP
    assert all(c.kernels >= 1 for c in checks)
    bad = [c for c in checks if not c.max_error <= 1e-4]
    assert not bad, f"OpenCL (GPU schedule) and llvm disagree: {bad}"


@requires_pocl
def test_pocl_check_sees_a_wrong_kernel(mlp, monkeypatch):
    from ember.codegen import pocl

    monkeypatch.setattr(pocl._Buffers, "_launch", lambda self, call, program: None)
    assert all(c.max_error > 0.1 for c in check_on_pocl(mlp))


def _empty_slice_graph() -> Graph:
    """cat(x[:, 8:], x) @ w: the empty slice is a zero-extent loop, which crashes dlight's Fallback."""
    b = Builder()
    x = b.input((4, 8), "float32", name="x")
    empty = b.emit(Slice((1,), (8,), (8,), (1,)), x)
    joined = b.emit(Concat(1), empty, x)
    w = b.const(np.ones((8, 8), np.float32))
    b.output(b.emit(MatMul(), joined, w))
    return b.build()


def test_zero_extent_loops_still_get_gpu_threads():
    build(_empty_slice_graph(), {"kind": "cuda", "arch": "sm_90"})


def test_functions_no_rule_takes_become_serial_kernels(mlp, monkeypatch, caplog):
    monkeypatch.setattr(gpu_schedule, "_first_rule", lambda *args: None)
    build(mlp, {"kind": "opencl"})
    assert "no GPU schedule rule took softmax; it runs as a serial kernel" in caplog.text


@requires_pocl
def test_serial_kernels_are_correct(mlp, monkeypatch):
    monkeypatch.setattr(gpu_schedule, "_first_rule", lambda *args: None)
    assert all(c.max_error <= 1e-4 for c in check_on_pocl(mlp))


def test_unschedulable_function_is_named(mlp, monkeypatch):
    monkeypatch.setattr(gpu_schedule, "_first_rule", lambda *args: None)

    def fail(func):
        raise RuntimeError("boom")

    monkeypatch.setattr(gpu_schedule, "_serial", fail)
    with pytest.raises(CodegenError, match=r"fused function '\w+' to GPU threads:\n  serial: boom"):
        build(mlp, {"kind": "cuda", "arch": "sm_90"})


_NO_CUDA = (
    "this model was built for cuda (sm_90) but no CUDA device is present; compile with --target "
    "llvm to run on this CPU, or copy the .so to a machine with that GPU"
)


def test_running_a_gpu_build_without_the_gpu_is_a_clear_error(mlp):
    import tvm

    from ember.runtime import Executor

    if tvm.cuda(0).exist:
        pytest.skip("a CUDA GPU is present")
    target = {"kind": "cuda", "arch": "sm_90"}
    executable = build(mlp, target).executable
    with pytest.raises(EmberError, match=re.escape(_NO_CUDA)):
        Executor(executable, target=target)
    with pytest.raises(
        EmberError, match=r"built for cuda but .* copy the \.so to a machine with that GPU"
    ):
        Executor(executable)
    with pytest.raises(EmberError, match=r"built for cuda \(sm_90\) and cannot run on cpu"):
        Executor(executable, "cpu", target=target)


@requires_rocm_link
def test_compiling_for_a_missing_gpu_says_so():
    import tvm

    import ember

    if tvm.rocm(0).exist:
        pytest.skip("a ROCm GPU is present")
    model = nn.Linear(8, 4)
    with pytest.raises(
        EmberError, match=r"built for rocm \(gfx90a\) but no ROCm device is present"
    ):
        ember.compile(
            model, (torch.randn(2, 8),), target={"kind": "rocm", "mcpu": "gfx90a"}, cache=False
        )
