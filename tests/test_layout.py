"""Checks the architecture rules tools can't: import layering, file sizes, a light `import ember`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("frontend", "ir", "passes", "codegen", "autotune", "runtime")


def _sources() -> list[Path]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return [*files, ROOT / "api.py", ROOT / "errors.py", ROOT / "__init__.py"]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_import_ember_loads_no_heavy_modules():
    code = (
        "import sys, ember, ember.ir, ember.passes\n"
        "heavy = [m for m in ('torch', 'onnx', 'tvm', 'xgboost') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pass_modules_do_not_import_each_other():
    passes = {p.stem for p in (ROOT / "passes").glob("*.py")} - {
        "__init__",
        "registry",
        "pipeline",
        "_match",
    }
    for name in passes:
        imported = _imports(ROOT / "passes" / f"{name}.py")
        others = {f"ember.passes.{other}" for other in passes - {name}}
        assert not imported & others, f"passes/{name}.py imports another pass: {imported & others}"


def test_ir_and_runtime_do_not_import_upward():
    upward = {"ember.frontend", "ember.passes", "ember.codegen", "ember.autotune", "ember.api"}
    for pkg in ("ir", "runtime"):
        for path in (ROOT / pkg).rglob("*.py"):
            bad = {m for m in _imports(path) if any(m.startswith(u) for u in upward)}
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    for path in (ROOT / "runtime").rglob("*.py"):
        allowed = ("ember.runtime", "ember.errors")
        bad = {m for m in _imports(path) if m.startswith("ember.") and not m.startswith(allowed)}
        assert not bad, f"{path.relative_to(ROOT)} imports the compiler: {bad}"


def test_no_file_is_over_800_lines():
    for path in _sources():
        lines = len(path.read_text().splitlines())
        assert lines <= 800, f"{path.relative_to(ROOT)} has {lines} lines (cap 800)"
