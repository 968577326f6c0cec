"""The equivalence checker: is a kernel the function its symbolic spec says it is?

1. Identity test. A kernel built from sums of products computes a polynomial of its inputs. Evaluate kernel and
   spec at a random point of integers drawn from a set S: if the polynomials differ, the Schwartz-Zippel lemma
   bounds the chance that they agree there by degree/|S|. Integers are chosen small enough that every partial sum is
   exact in the dtype (below 2**24 in float32, 2**53 in float64), so the comparison is exact equality, and enough
   independent points are tried to push the bound below 1e-9. The bound is reported.
2. Connectivity. For small configurations the kernel is probed with one-hot inputs and distinct labels on the
   other operand; the set of (output, input, weight) triples it joins must equal the set the equations give.
3. Piecewise ops (max, ReLU) get distinct integers so that every maximum is unique: values and the routing of the
   gradient are compared exactly; these rows have no Schwartz-Zippel bound.
4. Ops with exp, log or powers are evaluated in 50-digit arithmetic and the kernel must agree within a stated
   number of units in the last place (of the largest magnitude in the output), a numeric check.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import mpmath
import numpy as np
import sympy as sp
from sympy.printing.pycode import MpmathPrinter, PythonCodePrinter

TARGET_BOUND = 1e-9
#: the working precision of numeric rows' exact values (mpmath's own default is float64's 15)
NUMERIC_DIGITS = 50
DTYPES = (np.float32, np.float64)
_MANTISSA = {np.dtype(np.float32): 24, np.dtype(np.float64): 53}
_PIECEWISE_MODULES = [{"Heaviside": lambda value, at_zero=None: 1 if value > 0 else 0}, "math"]


def _printer(kind: str):
    """lambdify's own printer for ``kind``, told to print sums in the order they are held: sorting a convolution's
    thousands of terms into sympy's canonical order took most of a large row's time, and the sum is the same."""
    settings = {"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True, "order": "none"}
    if kind == "numeric":
        return MpmathPrinter(settings)
    return PythonCodePrinter(dict(settings, user_functions={"Heaviside": "Heaviside"} if kind == "piecewise" else {}))


@dataclass
class Case:
    """One kernel on one configuration.

    ``inputs``: symbol arrays that the checker fills with values; ``outputs``: expected expression arrays, or
    callables ``values -> array`` for results that are not expressions (max-pooling's argmax); ``call(kernel,
    arrays)`` runs the kernel on numpy arrays of one dtype and returns its outputs by name; ``kind`` is 'exact',
    'piecewise' or 'numeric'; ``degree`` bounds the polynomial's total degree; ``scale`` multiplies the named
    inputs so that divisions come out exact (average pooling); ``prepare(values)`` adds spec-derived inputs;
    ``probe`` = (one-hot input, labelled input or None, output) enables the connectivity check; ``tie_trials``
    extra piecewise trials draw from {-1, 0, 1}, so that equal maxima test the tie rule.
    """

    inputs: dict
    outputs: dict
    call: Callable
    kind: str = "exact"
    degree: int = 1
    scale: dict = field(default_factory=dict)
    prepare: Callable | None = None
    probe: tuple | None = None
    ulps: int = 8
    sample: Callable | None = None
    tie_trials: int = 0


@dataclass
class Result:
    ok: bool
    trials: int
    bound: float | None
    detail: str
    probed: bool = False


class NotIntegral(Exception):
    """An expression that :func:`integer_code` does not print: lambdify's printer takes it."""


def integer_code(expr) -> str:
    """Python source for ``expr``, built from symbols, integers, sums, products, positive integer powers, Max and
    Heaviside (``_PIECEWISE_MODULES``' name), which Python's integers evaluate exactly; NotIntegral for anything else
    (a rational: the exact rows scale theirs away first). Written for the spec's expressions: lambdify's printer asks
    each of a convolution's hundred thousand products for its precedence and sign, and took a third of the spec
    check's time outside compilation (``_integer_function`` is lambdify's function for these)."""
    if expr.is_Symbol:
        return expr.name
    if expr.is_Integer:
        return f"({expr.p})"
    if expr.is_Add:
        return "(" + " + ".join(map(integer_code, expr.args)) + ")"
    if expr.is_Mul:
        return "(" + "*".join(map(integer_code, expr.args)) + ")"
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        return f"({integer_code(expr.base)}**{expr.exp.p})"
    if isinstance(expr, sp.Max):
        return f"max({', '.join(map(integer_code, expr.args))})"
    if isinstance(expr, sp.Heaviside):  # its value at 0 (the second argument) is the module's own
        return f"Heaviside({integer_code(expr.args[0])})"
    raise NotIntegral(expr)


def _integer_function(symbols: list, expressions: list):
    """``lambdify(symbols, expressions)`` for expressions that :func:`integer_code` prints."""
    code = [integer_code(e) for e in expressions]
    arguments = [f"_arguments{i}" for i in range(len(symbols))]
    lines = [f"def evaluate({', '.join(arguments)}):"]
    lines += [f"    [{', '.join(s.name for s in group)}] = {argument}" for group, argument in zip(symbols, arguments)]
    lines.append(f"    return [{', '.join(code)}]")
    namespace = dict(_PIECEWISE_MODULES[0])
    exec(compile("\n".join(lines), "<spec expressions>", "exec"), namespace)
    return namespace["evaluate"]


class Evaluator:
    """Evaluates expression arrays at integer or mpmath points, exactly where the expressions allow it."""

    def __init__(self, inputs: dict, outputs: dict, kind: str):
        self.names = list(inputs)
        symbols = [list(inputs[name].flat) for name in self.names]
        self.kind = kind
        self.functions = {}
        for name, expressions in outputs.items():
            if callable(expressions):
                continue
            flat = list(expressions.flat)
            if kind == "numeric":
                self.functions[name] = (sp.lambdify(symbols, flat, modules="mpmath", printer=_printer(kind)), 1,
                                        expressions.shape)
                continue
            exact = kind == "exact" and flat
            denominator = math.lcm(*(_denominator(e) for e in flat)) if exact else 1
            scaled = [sp.expand(e * denominator) if denominator != 1 else e for e in flat]
            try:
                function = _integer_function(symbols, scaled)
            except NotIntegral:
                modules = _PIECEWISE_MODULES if kind == "piecewise" else "math"
                function = sp.lambdify(symbols, scaled, modules=modules, printer=_printer(kind))
            self.functions[name] = (function, denominator, expressions.shape)

    def __call__(self, values: dict) -> dict:
        if self.kind == "numeric":
            with mpmath.workdps(NUMERIC_DIGITS):
                return self._evaluate([[mpmath.mpf(float(v)) for v in values[name].flat] for name in self.names])
        return self._evaluate([[int(v) for v in values[name].flat] for name in self.names])

    def _evaluate(self, args: list) -> dict:
        result = {}
        for name, (function, denominator, shape) in self.functions.items():
            flat = function(*args)
            if denominator != 1:
                flat = [Fraction(v, denominator) for v in flat]
            array = np.empty(len(flat), dtype=object)
            array[:] = flat
            result[name] = array.reshape(shape)
        return result


def _denominator(expr) -> int:
    """The least common denominator of a polynomial's rational coefficients."""
    if expr.is_Rational:
        return int(expr.q)
    return math.lcm(*map(_denominator, expr.args)) if expr.args else 1


def _is_monomial(term) -> bool:
    """A number, a symbol, or a product of numbers and symbols to positive integer powers."""
    factors = term.args if term.is_Mul else (term,)
    return all(f.is_Number or f.is_Symbol or (f.is_Pow and f.base.is_Symbol and f.exp.is_Integer and f.exp > 0)
               for f in factors)


def _expanded_terms(expr) -> tuple:
    """The terms of ``expr`` once expanded. A sum of monomials is already expanded (sympy has merged its like
    terms), so it is taken as it stands: expanding a large convolution's sums again cost seconds a row."""
    terms = sp.Add.make_args(expr)
    if all(_is_monomial(term) for term in terms):
        return terms
    return sp.Add.make_args(sp.expand(expr))


def _term_count(expr) -> int:
    """How many terms ``expr`` has once expanded."""
    return len(_expanded_terms(expr))


def _max_terms(case: Case) -> int:
    terms = 1
    for expressions in case.outputs.values():
        if callable(expressions):
            continue
        for e in expressions.flat:
            terms = max(terms, _term_count(e))
    return terms


def sample_ranges(case: Case, dtypes) -> dict:
    """For each dtype, the largest R such that every partial sum of values in [-R, R] (times the input scales),
    with every fractional bit of the coefficients, stays exact. The expressions are analysed once for all dtypes."""
    denominator = 1
    if case.kind == "exact":
        # fractional coefficients (an SGD step's learning rate) use up bits below the integer part
        denominator = math.lcm(*(_denominator(e) for expressions in case.outputs.values()
                                 if not callable(expressions) for e in expressions.flat))
    terms = _max_terms(case)
    scale = max(case.scale.values(), default=1)
    ranges = {}
    for dtype in dtypes:
        limit = 2 ** _MANTISSA[np.dtype(dtype)] // denominator
        radius = int((limit / (2 * terms)) ** (1.0 / max(case.degree, 1)) / scale)
        ranges[dtype] = max(1, min(radius, 2 ** 20))
    return ranges


def _sample(case: Case, rng: np.random.Generator, radius: int) -> dict:
    values = {}
    for name, symbols in case.inputs.items():
        if case.kind == "piecewise":
            # distinct, nonzero integers: every maximum is unique and no ReLU input sits at its kink
            size = symbols.size
            magnitudes = rng.permutation(size) + 1
            draw = magnitudes * rng.choice([-1, 1], size=size)
        else:
            draw = rng.integers(-radius, radius + 1, size=symbols.size)
        values[name] = (draw * case.scale.get(name, 1)).reshape(symbols.shape)
    return values


def _compare_exact(got: np.ndarray, expected: np.ndarray) -> int:
    expected_float = np.array([float(v) for v in expected.flat], dtype=np.float64).reshape(expected.shape)
    if any(Fraction(f) != Fraction(v) for f, v in zip(expected_float.flat, expected.flat)):
        raise AssertionError("spec value not exactly representable: the sample range is too large")
    return int(np.count_nonzero(np.asarray(got, dtype=np.float64) != expected_float))


def _numeric_error_ulps(got: np.ndarray, expected: np.ndarray, dtype) -> float:
    """Largest |got - exact| in units of eps(dtype) times the largest |exact| in the array."""
    with mpmath.workdps(NUMERIC_DIGITS):
        magnitude = max((abs(v) for v in expected.flat), default=mpmath.mpf(0))
        if magnitude == 0:
            magnitude = mpmath.mpf(1)
        unit = mpmath.mpf(float(np.finfo(dtype).eps)) * magnitude
        worst = max(abs(mpmath.mpf(float(g)) - e) for g, e in zip(np.asarray(got).flat, expected.flat))
        return float(worst / unit)


class VersionsDiffer(Exception):
    """A CPU kernel's one-thread, streamed and parallel versions did not all compute the same results
    (``registry._every_version``)."""


def check_case(case: Case, kernel: Callable, rng: np.random.Generator, dtypes=DTYPES,
               trials: int | None = None, probe: bool = True) -> Result:
    """Run the identity (or piecewise or numeric) test and, when the case allows it and ``probe``, the connectivity
    probe."""
    try:
        return _check_case(case, kernel, rng, dtypes, trials, probe)
    except VersionsDiffer as error:
        return Result(False, 0, None, str(error))


def _check_case(case: Case, kernel: Callable, rng: np.random.Generator, dtypes, trials: int | None,
                probe: bool) -> Result:
    evaluate = Evaluator(case.inputs, case.outputs, case.kind)
    worst_bound, total_trials, worst_ulps = 0.0, 0, 0.0
    # the ranges bound the identity test and size the drawn integers; a case with a sampler of its own (every
    # numeric one) and no identity to bound needs neither, and its expressions cost seconds to expand
    radii = sample_ranges(case, dtypes) if case.kind == "exact" or case.sample is None else {}
    for dtype in dtypes:
        radius = radii.get(dtype)
        if case.kind == "exact":
            per_trial = case.degree / (2 * radius + 1)
            needed = max(2, math.ceil(math.log(TARGET_BOUND) / math.log(per_trial))) if per_trial < 1 else 64
        else:
            needed = 3
        needed = trials or needed
        for trial in range(needed + case.tie_trials):
            if trial >= needed:
                values = {name: rng.integers(-1, 2, size=symbols.shape) for name, symbols in case.inputs.items()}
            elif case.sample is not None:
                values = case.sample(rng, dtype)
            else:
                values = _sample(case, rng, radius)
            if case.prepare is not None:
                values = {**values, **case.prepare(values)}
            expected = evaluate(values)
            for name, derive in case.outputs.items():
                if callable(derive):
                    expected[name] = derive(values)
            arrays = {name: np.ascontiguousarray(value, dtype=dtype) if name in case.inputs else value
                      for name, value in values.items()}
            got = case.call(kernel, arrays)
            for name, want in expected.items():
                if case.kind == "numeric":
                    error = _numeric_error_ulps(got[name], want, dtype)
                    worst_ulps = max(worst_ulps, error)
                    if not error <= case.ulps:
                        return Result(False, total_trials + 1, None,
                                      f"{name}: {error:.1f} ulps in {np.dtype(dtype).name} (allowed {case.ulps})")
                    continue
                wrong = _compare_exact(got[name], want)
                if wrong:
                    return Result(False, total_trials + 1, None,
                                  f"{name}: {wrong} of {want.size} values differ in {np.dtype(dtype).name}")
            total_trials += 1
        if case.kind == "exact":
            worst_bound = max(worst_bound, per_trial ** needed)
    probed = False
    if case.probe is not None and probe:
        mismatch = connectivity_mismatch(case, kernel)
        if mismatch:
            return Result(False, total_trials, None, f"connectivity: {mismatch}", probed=True)
        probed = True
    if case.kind == "exact":
        detail = f"identity, degree {case.degree}"
    elif case.kind == "piecewise":
        detail = ("piecewise, distinct integers, values and routing exact" if case.sample is None
                  else "piecewise, integers with exact sums, values exact")
        if case.tie_trials:
            detail += ", ties to the first"
    else:
        detail = f"numeric, 50 digits, worst {worst_ulps:.2f} ulps (allowed {case.ulps})"
    return Result(True, total_trials, worst_bound if case.kind == "exact" else None, detail, probed)


def check_row(row, rng: np.random.Generator, paths: bool = False) -> Result:
    """:func:`check_case` on a registry row (its case built once); an identity test whose chance of passing a wrong
    kernel is not under ``TARGET_BOUND`` (its values drawn from too narrow a range) fails too. With ``paths``, the
    row's kernel paths only, for ``spec coverage``: one trial per dtype (and the tie trials), no connectivity probe,
    and no bound to meet."""
    case = row.case()
    result = check_case(case, row.kernel(), rng, trials=1 if paths else None, probe=not paths)
    if result.ok and case.kind == "exact" and not paths and not result.bound < TARGET_BOUND:
        return Result(False, result.trials, result.bound, f"error bound {result.bound:.1e} is not under "
                      f"{TARGET_BOUND:.0e}: {result.detail}", result.probed)
    return result


# --- connectivity --------------------------------------------------------------------------------------------------


def spec_connections(case: Case) -> set:
    """(output index, one-hot input index, label index or None) for every term of the spec's expressions."""
    probe_name, label_name, output_name = case.probe
    where = {}
    for name in (probe_name, label_name):
        if name is None:
            continue
        for index in np.ndindex(*case.inputs[name].shape):
            where[case.inputs[name][index]] = (name, index)
    connections = set()
    for out_index in np.ndindex(*case.outputs[output_name].shape):
        expr = case.outputs[output_name][out_index]
        pieces = expr.args if isinstance(expr, sp.Max) else _expanded_terms(expr)
        for piece in pieces:
            found = dict(where[symbol] for symbol in piece.free_symbols if symbol in where)
            if probe_name in found:
                connections.add((out_index, found[probe_name], found.get(label_name)))
    return connections


def kernel_connections(case: Case, kernel: Callable) -> set:
    """The same set, read off the kernel: one call per element of the one-hot input, labels 1, 2, 3, ..."""
    probe_name, label_name, output_name = case.probe
    shapes = {name: symbols.shape for name, symbols in case.inputs.items()}
    label_shape = shapes[label_name] if label_name else None
    connections = set()
    for probe_index in np.ndindex(*shapes[probe_name]):
        values = {name: np.zeros(shape, dtype=np.int64) for name, shape in shapes.items()}
        values[probe_name][probe_index] = 1
        if label_name:
            values[label_name] = np.arange(1, int(np.prod(label_shape)) + 1).reshape(label_shape)
        if case.prepare is not None:
            values = {**values, **case.prepare(values)}
        arrays = {name: np.ascontiguousarray(v, dtype=np.float64) if name in case.inputs else v
                  for name, v in values.items()}
        out = np.asarray(case.call(kernel, arrays)[output_name])
        for out_index in zip(*np.nonzero(out)):
            if label_name is None:
                connections.add((tuple(int(i) for i in out_index), probe_index, None))
                continue
            label = out[out_index]
            if label != int(label) or not 1 <= label <= np.prod(label_shape):
                connections.add((tuple(int(i) for i in out_index), probe_index, ("not a single term", label)))
                continue
            connections.add((tuple(int(i) for i in out_index), probe_index,
                             tuple(int(i) for i in np.unravel_index(int(label) - 1, label_shape))))
    return connections


def connectivity_mismatch(case: Case, kernel: Callable) -> str:
    """'' when the kernel joins exactly the spec's triples, else a description of the first differences."""
    expected = spec_connections(case)
    got = kernel_connections(case, kernel)
    if expected == got:
        return ""
    missing = sorted(expected - got, key=str)[:3]
    extra = sorted(got - expected, key=str)[:3]
    return f"missing {missing} extra {extra} ({len(expected - got)} missing, {len(got - expected)} extra)"


# --- the command ----------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    """``python -m spec check [--backend cpu|cuda|all] [--quick] [--seed N]``: one row per (op, backend,
    configuration); exit status 1 on any mismatch."""
    from spec import registry

    parser = argparse.ArgumentParser(prog="python -m spec check", description=main.__doc__)
    parser.add_argument("--backend", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="one configuration per kernel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kernel", default=None, help="only kernels whose name contains this text")
    parser.add_argument("--paths", action="store_true",
                        help="each row's kernel paths only, as `spec coverage` measures them: one trial per dtype and "
                             "no connectivity probe (a kernel's path depends on its configuration and the tie trials' "
                             "values, not on how many trials it runs); not a proof")
    args = parser.parse_args(argv)
    backends = registry.available_backends() if args.backend == "all" else [args.backend]
    if args.backend == "cuda" and "cuda" not in registry.available_backends():
        print("the CUDA backend is not available here", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    failures, rows, worst_bound = 0, 0, 0.0
    header = f"{'kernel':<26} {'backend':<7} {'configuration':<44} {'result':<6} {'trials':>6} {'bound':>9}  check"
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for row in registry.rows(backends, quick=args.quick):
        if args.kernel and args.kernel not in row.kernel_name:
            continue
        result = check_row(row, rng, paths=args.paths)
        rows += 1
        failures += not result.ok
        if result.bound is not None:
            worst_bound = max(worst_bound, result.bound)
        bound = f"{result.bound:.1e}" if result.bound is not None else "-"
        probe = " + connectivity" if result.probed else ""
        print(f"{row.kernel_name:<26} {row.backend:<7} {row.label:<44} {'ok' if result.ok else 'FAIL':<6} "
              f"{result.trials:>6} {bound:>9}  {result.detail}{probe}", flush=True)
    print(f"\n{rows} rows, {failures} failed; worst identity-test error bound {worst_bound:.1e}; "
          f"{time.perf_counter() - started:.1f} s")
    if args.quick:
        print("--quick checks one configuration per kernel; python -m spec coverage --quick lists the lines and "
              "branches of the kernels that it leaves out")
    return 1 if failures else 0
