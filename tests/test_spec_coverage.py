"""The spec registry reaches every line and branch of every kernel file.

Its own file, the suite's longest test (minutes: every registry row run under coverage, on both backends): the
test runner hands out whole files to its workers, so that this one runs beside test_spec.py instead of after it.
"""
from spec import registry


def test_the_registry_takes_every_branch_of_every_kernel():
    """Every line and branch of every kernel file is run by some registry configuration (the CPU kernels as Python,
    the CUDA kernels under the simulator; both measured at once, in two processes): a mutant anywhere in them
    meets a row that sees it."""
    from concurrent.futures import ThreadPoolExecutor

    from spec import coverage

    backends = [b for b in ("cpu", "cuda") if b in registry.available_backends()]
    with ThreadPoolExecutor(len(backends)) as pool:
        missed = dict(zip(backends, pool.map(coverage.measure, backends)))
    for backend, gaps in missed.items():
        assert not gaps, f"{backend}: the registry leaves out " + "; ".join(coverage.describe(gaps))
