"""The spec registry's reach into the CPU kernels, in a file of its own: the check runs every registry row again
under coverage.py (minutes), and the test runner's workers take whole files, so that it runs beside the registry's
rows (tests/test_spec.py) rather than after them, and beside the CUDA kernels' twin (tests/test_cuda.py)."""


def test_the_registry_takes_every_branch_of_every_cpu_kernel():
    """Every line and branch of every CPU kernel file is run, as Python, by some registry configuration: a mutant
    anywhere in them meets a row that sees it."""
    from spec import coverage

    gaps = coverage.measure("cpu")
    assert not gaps, "the registry leaves out " + "; ".join(coverage.describe(gaps))
