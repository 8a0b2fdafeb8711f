"""The lint and the type check run with the tests, with the settings in pyproject.toml: both must be clean."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tool(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = run_tool("ruff", "check", "contrafeat", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout[-3000:]


def test_mypy_is_clean_on_the_package() -> None:
    result = run_tool("mypy")
    assert result.returncode == 0 and "Success: no issues found" in result.stdout, result.stdout[-3000:]
