"""Shared fixtures. Randomness comes from explicit generators, one fixed seed per test.

Without an NVIDIA driver the CUDA kernels run under Numba's CUDA simulator, which must be chosen before numba is
first imported: this file is loaded before any test module, so it decides here.
"""
import ctypes.util
import os
import sys
import zlib

if "NUMBA_ENABLE_CUDASIM" not in os.environ and ctypes.util.find_library("cuda") is None:
    if "numba" in sys.modules:
        raise RuntimeError("numba was imported before tests/conftest.py could enable the CUDA simulator")
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so each test sees the same numbers on every run."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
