"""Compile every CUDA kernel of numconv to PTX, without a GPU: a type and compile check of the real CUDA target,
which the simulator (pure Python) does not make.

    pip install "cuda-toolkit[nvvm,nvrtc,cudart]==13.*"      # the CUDA compiler libraries, about 320 MB
    python scripts/compile_ptx.py [--cc 8.0 9.0] [--out DIR]

The launchers are driven with NumPy arrays through the spec registry's configurations (both dtypes) and the
functional layer's device utilities; instead of launching, each kernel and the numba types of its arguments are
recorded (a C-contiguous NumPy array has the type of a C-contiguous device array), and every distinct (kernel,
signature) pair is compiled with ``cuda.compile_ptx`` for each compute capability. Device functions are compiled
for the compute capability asked for, not for a device that is not there. Run it on a machine without a GPU and
without ``NUMBA_ENABLE_CUDASIM``; exit status 1 if anything fails to compile.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _record_launches(support, gemm, loss_module):
    """Replace the launch and device allocation of the launchers by a recorder; return the list it fills."""
    from numba import cuda

    class Recorded(list):
        restore = None

    recorded = Recorded()

    class HostArray(np.ndarray):
        """A NumPy array standing in for a device array."""

        def copy_to_host(self):
            return np.asarray(self)

    def record(kernel, grid, block, *args):
        recorded.append((kernel, args))

    for module in (support, gemm, loss_module):
        module.launch = record
    gemm.device_table = gemm.build_table
    # device allocations become NumPy arrays while the launchers are driven (restored before compiling)
    saved = {"device_array": cuda.device_array, "to_device": cuda.to_device}
    cuda.device_array = lambda shape, dtype=np.float64: np.zeros(shape, dtype=dtype).view(HostArray)
    cuda.to_device = lambda array: np.array(array).view(HostArray)

    def restore():
        for name, value in saved.items():
            setattr(cuda, name, value)

    recorded.restore = restore
    return recorded


def _drive_kernels(dtypes, recorded) -> None:
    """Call every CUDA launcher on the registry's configurations and every device utility once per dtype."""
    from numconv.kernels.cuda import support
    from spec import registry

    for row in registry.rows(["cuda"]):
        case = row.case()
        kernel = getattr(__import__(f"numconv.kernels.cuda.{row.entry.module}", fromlist=["_"]), row.entry.name)
        for dtype in dtypes:
            arrays = {name: np.zeros(symbols.shape, dtype=dtype) for name, symbols in case.inputs.items()}
            if case.prepare is not None:
                arrays.update({name: np.asarray(value) for name, value in case.prepare(
                    {name: np.zeros(symbols.shape, dtype=np.int64) for name, symbols in case.inputs.items()}
                ).items()})
            case.call(kernel, arrays)
    for dtype in dtypes:
        values = np.zeros((2, 3), dtype=dtype)
        support.fill(values, 0.0)
        support.total(values)
        # what support.contiguous launches for a strided array (it cannot build a device view here)
        recorded.append((support._gather5, (np.zeros((1, 1, 1, 4, 3), dtype=dtype)[:, :, :, ::2],
                                            np.zeros(6, dtype=dtype))))
    labels = np.zeros(4, dtype=np.int64)
    support.fill(np.zeros(3, dtype=bool), True)
    support.cast(np.zeros(4, dtype=np.int32), np.int64)
    support.first_outside(labels, 0, 3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", nargs="+", default=["8.0", "9.0"], help="compute capabilities, e.g. 8.0 9.0")
    parser.add_argument("--out", type=Path, default=None, help="also write the PTX files here")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print("unset NUMBA_ENABLE_CUDASIM: the simulator compiles nothing", file=sys.stderr)
        return 2

    import numba
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    from numconv.kernels.cuda import gemm, loss, support

    recorded = _record_launches(support, gemm, loss)
    for module_name in ("pointwise", "pool", "dense", "conv", "norm", "loss"):
        module = __import__(f"numconv.kernels.cuda.{module_name}", fromlist=["_"])
        if hasattr(module, "launch"):
            module.launch = support.launch
    try:
        _drive_kernels((np.float32, np.float64), recorded)
    finally:
        recorded.restore()

    unique = {}
    for kernel, kernel_args in recorded:
        signature = tuple(numba.typeof(a) for a in kernel_args)
        unique.setdefault((kernel.py_func, signature), kernel)
    failures = 0
    started = time.perf_counter()
    for cc_text in args.cc:
        cc = tuple(int(part) for part in cc_text.split("."))
        # device functions called by a kernel are compiled for the current device's compute capability
        dispatcher.get_current_device = lambda cc=cc: types.SimpleNamespace(compute_capability=cc)
        for number, ((py_func, signature), kernel) in enumerate(unique.items()):
            name = f"{py_func.__module__}.{py_func.__qualname__}"
            try:
                ptx, _ = cuda.compile_ptx(py_func, signature, cc=cc)
            except Exception as error:  # report every kernel, then fail
                failures += 1
                print(f"FAIL sm_{cc[0]}{cc[1]} {name}{signature}: {type(error).__name__}: {error}")
                continue
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                stem = f"{number:03d}-{name.replace('.<locals>', '').replace('.', '_')}-sm_{cc[0]}{cc[1]}"
                (args.out / f"{stem}.ptx").write_text(ptx)
    print(f"{len(unique)} kernel signatures x {len(args.cc)} compute capabilities, {failures} failed; "
          f"{time.perf_counter() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
