"""Shared by the asv benchmark modules: make ``numconv`` importable from a fresh clone (asv runs the benchmarks with
the repository's parent directories stripped from the path unless the package is installed) and ``anchors``
importable whether asv imports the benchmarks as a package or ``compare.py`` runs as a script."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (str(HERE.parent), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import time  # noqa: E402


def warm_up(*functions, rounds: int = 2) -> None:
    """Call each of ``functions`` ``rounds`` times, in turn: in a new process the first calls still allocate and
    fault in their scratch buffers (a forward pass after a backward one can take twice its time), so that a timed
    call, even asv's single one under --quick, meets the steady state."""
    for _ in range(rounds):
        for function in functions:
            function()


def best_of(function, repeat: int = 3) -> float:
    """The best wall time of ``repeat`` calls, after one untimed call."""
    function()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def require_ort() -> None:
    """In an asv ``setup``: skip the benchmark (asv skips on NotImplementedError) without onnx and onnxruntime."""
    import anchors

    if not anchors.HAS_ORT:
        raise NotImplementedError("onnx and onnxruntime are needed for the ONNX Runtime benchmarks")
