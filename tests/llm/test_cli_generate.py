"""`ember generate` in a real subprocess: it compiles the factory's model and reports tokens/s."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_generate_prints_tokens_and_speed():
    factory = ROOT / "tests" / "llm" / "factories.py"
    command = [sys.executable, "-m", "ember.cli", "generate", f"{factory}:llama"]
    command += ["--batch", "2", "--prompt-length", "5", "--max-new-tokens", "6"]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [len(line.split()) for line in lines[:2]] == [6, 6]
    assert re.search(r"decode 5 steps in [\d.]+ ms: [\d.]+ tokens/s \(batch 2\)", lines[2])


@pytest.mark.slow
def test_generate_speculative_reports_acceptance():
    factory = ROOT / "tests" / "llm" / "factories.py"
    command = [sys.executable, "-m", "ember.cli", "generate", f"{factory}:llama"]
    command += ["--prompt-length", "5", "--max-new-tokens", "8", "--quantize", "w4a16:group=32"]
    command += ["--speculative", "qspec", "--draft-len", "2"]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert re.search(r"[\d.]+ tokens/s \(batch 1\)", lines[-2])
    assert re.search(r"qspec: acceptance [\d.]+ over \d+ rounds; weights \d+ bytes", lines[-1])
