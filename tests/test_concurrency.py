"""numconv under concurrency: processes forked after numconv has run kernels, and several Python threads calling
kernels at once. Both need Numba's TBB threading layer (numconv/kernels/threads.py)."""
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np

import numconv.functional as F
from numconv.kernels.cpu import conv as cpu_conv

ROOT = Path(__file__).resolve().parents[1]

FORKED = textwrap.dedent("""
    import json, multiprocessing, sys
    import numpy as np
    import numba
    import numconv.functional as F

    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((8, 3, 3, 3)).astype(np.float32)

    def convolve(scale):
        y = F.conv2d(x * scale, w, padding=1)
        grad_x, grad_w, _ = F.conv2d_backward(np.ones_like(y), x * scale, w, padding=1)
        return [float(y.sum()), float(grad_x.sum()), float(grad_w.sum())]

    if __name__ == "__main__":
        parent = [convolve(scale) for scale in range(4)]  # the parent has run kernels before it forks
        with multiprocessing.get_context("fork").Pool(2) as pool:
            children = pool.map_async(convolve, range(4)).get(timeout=60)
        print(json.dumps({"layer": numba.threading_layer(), "parent": parent, "children": children}))
""")


def test_forked_children_compute_the_parents_results():
    done = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "unsafe" not in done.stderr  # GNU OpenMP's "fork() called from a process already using GNU OpenMP"
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["layer"] == "tbb"
    assert result["children"] == result["parent"]


def test_the_threads_take_tbb_even_when_started_before_the_first_kernel():
    """numba.get_num_threads() and set_num_threads() start Numba's threads and fix their layer: right after
    ``import numconv`` (as numconv's benchmarks and MPI setup call them) that layer is TBB, not OpenMP."""
    program = ("import numba, numpy as np, numconv; numba.set_num_threads(numba.get_num_threads()); "
               "numconv.functional.conv2d(np.ones((2, 64, 64, 64), np.float32), np.ones((4, 64, 3, 3), np.float32)); "
               "print(numba.threading_layer())")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["tbb"]


def _workloads(rng):
    """Different layers, forward and backward, each a function of no arguments returning its arrays."""
    x2 = rng.standard_normal((4, 3, 20, 20)).astype(np.float32)
    w2 = rng.standard_normal((16, 3, 5, 5)).astype(np.float32)
    x3 = rng.standard_normal((2, 32, 12, 12)).astype(np.float32)  # 3x3 stride 1, 32 channels, 72 tiles: Winograd
    w3 = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    x1 = rng.standard_normal((3, 4, 300)).astype(np.float64)
    w1 = rng.standard_normal((8, 2, 9)).astype(np.float64)
    xv = rng.standard_normal((2, 2, 5, 9, 9)).astype(np.float32)
    wv = rng.standard_normal((4, 2, 3, 3, 3)).astype(np.float32)
    xl, wl = rng.standard_normal((17, 70)).astype(np.float32), rng.standard_normal((33, 70)).astype(np.float32)

    def conv2d():
        y = F.conv2d(x2, w2, stride=2, padding=1)
        return [y, *F.conv2d_backward(np.ones_like(y), x2, w2, stride=2, padding=1)[:2]]

    def winograd():
        y = F.conv2d(x3, w3, padding=1)
        return [y, *F.conv2d_backward(y, x3, w3, padding=1)[:2]]

    def conv1d():
        y = F.conv1d(x1, w1, dilation=3, groups=2)
        return [y, *F.conv1d_backward(y, x1, w1, dilation=3, groups=2)[:2]]

    def conv3d():
        y = F.conv3d(xv, wv, padding=(1, 0, 1))
        return [y, *F.conv3d_backward(y, xv, wv, padding=(1, 0, 1))[:2]]

    def pool_and_dense():
        pooled, indices = F.max_pool2d(x2, 3, stride=2, return_indices=True)
        y = F.linear(xl, wl)
        return [pooled, indices, F.max_pool2d_backward(pooled, x2, 3, stride=2, indices=indices)[0], y,
                *F.linear_backward(y, xl, wl)[:2]]

    def forced():  # the formulations the spec registry forces, called while the others choose their own
        out = np.empty((4, 16, 16, 16), np.float32)
        results = []
        for variant in (cpu_conv.conv_forward_lanes, cpu_conv.conv_forward_rows, cpu_conv.conv_forward_wide):
            variant(x2.reshape(4, 3, 1, 20, 20), w2.reshape(16, 3, 1, 5, 5), np.zeros(16, np.float32),
                    out.reshape(4, 16, 1, 16, 16), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1)
            results.append(out.copy())
        return results

    return [conv2d, winograd, conv1d, conv3d, pool_and_dense, forced]


def test_kernels_called_from_several_threads_at_once_give_single_threaded_results(rng):
    workloads = _workloads(rng)
    alone = [workload() for workload in workloads]
    rounds = 4
    start = threading.Barrier(len(workloads))
    results, errors = {}, []

    def run(index, workload):
        try:
            start.wait()
            results[index] = [workload() for _ in range(rounds)]
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workloads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert not errors, errors
    for index, expected in enumerate(alone):
        for repeat in results[index]:
            for got, want in zip(repeat, expected):
                np.testing.assert_array_equal(got, want)
