"""Shared fixtures. Randomness comes from explicit generators, one fixed seed per test.

Without an NVIDIA driver the CUDA kernels run under Numba's CUDA simulator, which must be chosen before numba is
first imported: this file is loaded before any test module, so it decides here. ``NUMCONV_TEST_DEVICE`` overrides
the choice: ``gpu`` runs the CUDA tests on the GPU (and stops at once if there is none), ``simulator`` under the
simulator even where a GPU is present.
"""
import ctypes.util
import os
import sys
import zlib

DEVICE = os.environ.get("NUMCONV_TEST_DEVICE", "")
CHOSEN_BEFORE = os.environ.get("NUMBA_ENABLE_CUDASIM")
if DEVICE not in ("", "gpu", "simulator"):
    raise RuntimeError(f"NUMCONV_TEST_DEVICE must be 'gpu' or 'simulator', got {DEVICE!r}")
if DEVICE == "gpu":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
elif DEVICE == "simulator" or ("NUMBA_ENABLE_CUDASIM" not in os.environ and ctypes.util.find_library("cuda") is None):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
if "numba" in sys.modules and os.environ.get("NUMBA_ENABLE_CUDASIM") != CHOSEN_BEFORE:
    raise RuntimeError("numba was imported before tests/conftest.py could choose between the GPU and the simulator")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

if DEVICE == "gpu":
    from numba import cuda

    if not cuda.is_available():
        raise pytest.UsageError("NUMCONV_TEST_DEVICE=gpu, but numba-cuda finds no GPU (numba.cuda.detect() says why)")


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so each test sees the same numbers on every run."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pytest-xdist) runs a worker per core, at most 4: each worker compiles the kernels its test files
    need, so past a few workers more of them compile the same kernels again rather than finish sooner."""
    return max(1, min(4, os.cpu_count() or 1))
