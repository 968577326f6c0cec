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


def best_of(function, repeat: int = 3) -> float:
    """The best wall time of ``repeat`` calls, after one untimed call."""
    function()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best
