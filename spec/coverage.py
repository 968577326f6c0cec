"""``python -m spec coverage [--backend cpu|cuda|all] [--quick]``: which lines and branches of the kernels the spec
registry's configurations reach.

A kernel line that no configuration runs is a line the spec never proves: a wrong offset there passes every row.
So the spec check runs again, in a child process, under coverage.py: the CPU kernels as plain Python
(``NUMBA_DISABLE_JIT=1``, so that coverage sees their lines), the CUDA kernels under Numba's simulator (which runs
them as Python anyway). It runs as ``spec check --paths``: each row's kernel once per dtype, and on the tie trials'
values, without the connectivity probe, since a row's path through a kernel depends on its configuration and those
values, not on how many times it runs (the full check, which proves the kernels, runs in ``tests/test_spec.py``).
The report lists every line and branch of the kernel files that no row took; error paths
and the handling of NaN and infinities (which the registry's integer identity tests cannot hold) are excluded in
``setup.cfg``, and so are the generated kernels whose blocks this CPU's vector registers do not take
(``numconv.vectors.registers``): the registry proves the kernels this machine runs, and
``tests/test_cpu_algorithms.py`` checks every generated kernel's products on any machine. With ``--quick``, it
measures the quick check, one configuration per kernel, and so says which branches the quick check leaves out.
Exit status 1 when anything is left out.
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the kernel files, per backend: what the registry's configurations must run through
KERNEL_FILES = {
    "cpu": ["numconv/kernels/cpu/activation.py", "numconv/kernels/cpu/conv.py", "numconv/kernels/cpu/conv_layout.py",
            "numconv/kernels/cpu/conv_cost.py", "numconv/kernels/cpu/conv_plan.py", "numconv/kernels/cpu/dense.py",
            "numconv/kernels/cpu/loss.py", "numconv/kernels/cpu/norm.py", "numconv/kernels/cpu/packed.py",
            "numconv/kernels/cpu/pointwise.py",
            "numconv/kernels/cpu/pool.py", "numconv/kernels/cpu/blocked.py", "numconv/kernels/cpu/winograd.py",
            "numconv/kernels/cpu/winograd_kernels.py", "numconv/kernels/cpu/winograd_weight.py",
            "numconv/kernels/scalar.py"],
    "cuda": ["numconv/kernels/cuda/activation.py", "numconv/kernels/cuda/conv.py", "numconv/kernels/cuda/dense.py",
             "numconv/kernels/cuda/gemm.py", "numconv/kernels/cuda/loss.py", "numconv/kernels/cuda/norm.py",
             "numconv/kernels/cuda/pointwise.py", "numconv/kernels/cuda/pool.py"],
}
#: CPU files that hold kernel decorators but are not kernel files, each with why (tests/test_spec.py requires every
#: other file of numconv/kernels/cpu that defines a kernel to be in ``KERNEL_FILES``)
NOT_KERNEL_FILES = {
    "numconv/kernels/cpu/codegen.py": "writes blocked.py (a kernel file); its decorators are the text it writes",
    "numconv/kernels/cpu/parallel.py": "runs kernels: the choice of a kernel's one-thread or parallel version, and "
                                       "the one parallel loop of every blocked and Winograd kernel (``_ranges``), "
                                       "which their spec checks run; its call of a task by address is compiled code",
    "numconv/kernels/cpu/streaming.py": "the element-wise kernels' loop parts: one element, which the kernels' rows "
                                        "run, or a block streamed by compiled code (an intrinsic) that the spec "
                                        "check runs in every row",
}
#: how each backend's kernels run as Python
ENVIRONMENT = {"cpu": {"NUMBA_DISABLE_JIT": "1"}, "cuda": {"NUMBA_ENABLE_CUDASIM": "1"}}


def _other_registers_kernels() -> list[str]:
    """Patterns of the def lines of the generated CPU kernels sized for another count of vector registers than this
    CPU's (and of their variants that split the sum), and of the paired Winograd kernels where this CPU does not take
    them (excluding a def line excludes its whole function)."""
    from numconv import vectors
    from numconv.kernels.cpu import codegen, tuning, winograd_kernels

    mine = vectors.registers()
    names = [codegen.kernel_name(*shape) for table in codegen.TABLES
             for registers, shapes in table.items() if registers != mine for shape in shapes]
    names += [kernel.__name__ for (*_, width), kernel in winograd_kernels.KERNELS.items()
              if width != winograd_kernels.WIDTHS[mine]]
    if not tuning.WINOGRAD_PAIRED:
        names += [kernel.__name__ for kernel in winograd_kernels.PAIRED.values()]
    return [rf"def {name}(_split)?(_tasks)?\(" for name in names]


def _rcfile(scratch: Path) -> Path:
    """``setup.cfg``'s coverage settings, excluding :func:`_other_registers_kernels` too."""
    settings = configparser.RawConfigParser()
    settings.read(ROOT / "setup.cfg")
    rcfile = configparser.RawConfigParser()
    for section in ("coverage:run", "coverage:report"):
        rcfile[section] = dict(settings[section]) if settings.has_section(section) else {}
    excluded = rcfile["coverage:report"].get("exclude_also", "").strip().splitlines()
    rcfile["coverage:report"]["exclude_also"] = "\n".join(excluded + _other_registers_kernels())
    path = scratch / "coverage.cfg"
    with open(path, "w") as handle:
        rcfile.write(handle)
    return path


def measure(backend: str, quick: bool = False) -> dict:
    """{kernel file: {"lines": [...], "branches": [[from, to], ...]}} of what the spec check on ``backend`` left
    out (files it left nothing out of are absent)."""
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "coverage.data"
        report = Path(scratch) / "coverage.json"
        include = ",".join(str(ROOT / name) for name in KERNEL_FILES[backend])
        environment = dict(os.environ, **ENVIRONMENT[backend])
        rcfile = _rcfile(Path(scratch))
        command = [sys.executable, "-m", "coverage", "run", f"--rcfile={rcfile}", f"--data-file={data}",
                   f"--include={include}", "-m", "spec", "check", "--backend", backend, "--paths"]
        checked = subprocess.run(command + (["--quick"] if quick else []), cwd=ROOT, env=environment,
                                 capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"the spec check failed under coverage:\n{checked.stdout[-4000:]}{checked.stderr}")
        subprocess.run([sys.executable, "-m", "coverage", "json", f"--rcfile={rcfile}",
                        f"--data-file={data}", f"--include={include}", "-o", str(report)], cwd=ROOT,
                       env=environment, check=True, capture_output=True)
        files = json.loads(report.read_text())["files"]
    missed = {}
    for name in KERNEL_FILES[backend]:
        measured = files.get(str(ROOT / name)) or files.get(name)
        if measured is None:
            missed[name] = {"lines": ["the file was never run"], "branches": []}
        elif measured["missing_lines"] or measured.get("missing_branches"):
            missed[name] = {"lines": measured["missing_lines"], "branches": measured.get("missing_branches", [])}
    return missed


def _ranges(numbers: list) -> str:
    """1, 2, 3, 7 -> '1-3, 7' (numbers in order; other entries as they are)."""
    runs = []
    for number in numbers:
        if runs and isinstance(number, int) and isinstance(runs[-1][1], int) and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def describe(missed: dict) -> list[str]:
    """One line per file: the lines and the branches (from->to; 'exit' leaves the function) left out."""
    lines = []
    for name, parts in missed.items():
        branches = [f"{start}->{'exit' if end < 0 else end}" for start, end in parts["branches"]]
        pieces = [f"lines {_ranges(parts['lines'])}"] if parts["lines"] else []
        pieces += [f"branches {', '.join(branches)}"] if branches else []
        lines.append(f"{name}: {'; '.join(pieces)}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spec coverage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="measure the quick check (one configuration a kernel)")
    args = parser.parse_args(argv)
    backends = ["cpu", "cuda"] if args.backend == "all" else [args.backend]
    left_out = 0
    for backend in backends:
        missed = measure(backend, args.quick)
        what = "the quick check" if args.quick else "the registry"
        if not missed:
            print(f"{backend}: {what} runs every line and branch of the {len(KERNEL_FILES[backend])} kernel files")
            continue
        print(f"{backend}: {what} leaves out:")
        for line in describe(missed):
            print(f"  {line}")
        left_out += 1
    return 1 if left_out else 0
