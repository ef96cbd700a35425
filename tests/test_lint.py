"""`make lint` stays clean: ruff on the repository and mypy on the package (the public API is typed)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def check(*command):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def test_ruff_finds_nothing():
    check(sys.executable, "-m", "ruff", "check", "--quiet", ".")


def test_mypy_finds_nothing_in_the_package():
    assert "Success: no issues found" in check(sys.executable, "-m", "mypy", "nlptool")
