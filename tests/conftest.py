"""Shared fixtures. Randomness comes from explicit generators, one fixed seed per test."""
import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so each test sees the same numbers on every run."""
    return np.random.default_rng(_stable_seed(request.node.nodeid))


def _stable_seed(text: str) -> int:
    return zlib.crc32(text.encode())
