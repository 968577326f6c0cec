"""ONNX's own operator test cases through numconv.onnx: per op, how many pass and how many are refused, and why.

    python scripts/onnx_cases.py [--list]

Every single-op node case that the onnx package ships (``onnx.backend.test.case.node``) whose op numconv supports is
loaded with ``numconv.onnx.load`` and run on each of its data sets. A case passes when every output matches ONNX's
within the case's own rtol and atol; it is refused when load or run raises an error that names the node; anything
else (a wrong answer, a crash, an error that does not say where) makes it wrong. ``--list`` prints each refused
case with its reason. Exit status 1 when any case is wrong.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _clear(error: Exception, op: str) -> bool:
    """Whether a refusal says where: the node and its op, or numconv's limit."""
    text = str(error)
    return f"({op})" in text or "numconv" in text


def run_case(case, op: str) -> tuple:
    """('passed' | 'refused' | 'wrong', reason) for one ONNX node case."""
    import numconv.onnx as nx

    try:
        session = nx.load(case.model)
    except (ValueError, TypeError) as error:
        return ("refused", f"load: {error}") if _clear(error, op) else ("wrong", f"unclear refusal: {error}")
    for inputs, outputs in case.data_sets:
        feed = {value.name: array for value, array in zip(case.model.graph.input, inputs)}
        try:
            results = session.run(None, feed)
        except (ValueError, TypeError) as error:  # what only the input's shape tells (broadcasting, an axis)
            return ("refused", f"run: {error}") if _clear(error, op) else ("wrong", f"unclear refusal: {error}")
        for got, want in zip(results, outputs):
            if got.shape != want.shape:
                return "wrong", f"shape {got.shape}, ONNX's {want.shape}"
            if not np.allclose(got, want, rtol=case.rtol, atol=case.atol):
                return "wrong", f"largest difference {np.max(np.abs(got - want))} (rtol {case.rtol}, atol {case.atol})"
    return "passed", ""


def run_cases() -> dict:
    """{op: {"passed": [case names], "refused": [(name, reason)], "wrong": [(name, reason)]}} over every single-op
    node case of a supported op."""
    from onnx.backend.test.case.node import collect_testcases

    from numconv.onnx.graph import SUPPORTED_OPS

    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ONNX's reference code for other ops divides by zero on purpose
        cases = collect_testcases()
    for case in cases:
        ops = {node.op_type for node in case.model.graph.node}
        if case.kind != "node" or len(ops) != 1 or not ops <= set(SUPPORTED_OPS):
            continue
        (op,) = ops
        outcome, reason = run_case(case, op)
        entry = results.setdefault(op, {"passed": [], "refused": [], "wrong": []})
        entry[outcome].append(case.name if outcome == "passed" else (case.name, reason))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print each refused case with its reason")
    args = parser.parse_args(argv)
    results = run_cases()
    print(f"{'op':<20} {'passed':>6} {'refused':>7} {'wrong':>5}")
    for op in sorted(results):
        counts = [len(results[op][kind]) for kind in ("passed", "refused", "wrong")]
        print(f"{op:<20} {counts[0]:>6} {counts[1]:>7} {counts[2]:>5}")
    totals = [sum(len(entry[kind]) for entry in results.values()) for kind in ("passed", "refused", "wrong")]
    print(f"{'total':<20} {totals[0]:>6} {totals[1]:>7} {totals[2]:>5}")
    for op in sorted(results):
        for name, reason in results[op]["wrong"] + (results[op]["refused"] if args.list else []):
            print(f"  {op} {name}: {reason}")
    return 1 if totals[2] else 0


if __name__ == "__main__":
    sys.exit(main())
