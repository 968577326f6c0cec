"""The code is clean by flake8 (setup.cfg has the settings; the generated kernels are left out, their generators
are not)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_flake8_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "flake8"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
