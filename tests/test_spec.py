"""The spec checker over the whole registry, and the checker itself tested: planted bugs must be caught."""
import itertools

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings

from spec import cases, check, configs, ops, registry, windows
from spec.ops import ConvConfig, PoolConfig, ShapeConfig
from tests import naive
from tests.strategies import conv_configs

#: the CPU rows but the pooling kernels': those are tests/test_spec_pool.py's, in a file of their own so that the test
#: runner, which hands whole files to its workers, compiles the two halves' kernels on two workers at once
CPU_ROWS = [row for row in registry.rows(["cpu"]) if row.entry.module != "pool"]


@pytest.mark.parametrize("row", CPU_ROWS, ids=[f"{r.kernel_name}-{r.label}" for r in CPU_ROWS])
def test_cpu_kernel_equals_spec(row):
    result = check.check_row(row, np.random.default_rng(0))
    assert result.ok, result.detail


@pytest.mark.parametrize("backend", registry.available_backends())
def test_the_registry_covers_exactly_the_kernels_of_every_module(backend):
    """Nothing escapes: each kernel module's __all__ is what the registry checks on that backend, no more, no less."""
    unchecked, unknown = registry.coverage_gaps(backend)
    assert not unchecked, f"kernels without a spec entry on {backend}: {unchecked}"
    assert not unknown, f"spec entries naming no kernel on {backend}: {unknown}"


def test_a_parallel_kernel_whose_one_thread_version_differs_fails_its_rows(monkeypatch):
    """The registry's small arrays alone would reach the one-thread versions: each row runs both, and a difference
    between them fails the row even where the parallel version meets the spec."""
    from numconv.kernels.cpu import pointwise

    relu = pointwise.relu_forward
    entry = registry.entry("relu_forward")
    case, rng = entry.build(entry.configs[0]), np.random.default_rng(0)
    assert check.check_case(case, registry.kernel_function("cpu", "pointwise", "relu_forward"), rng).ok

    def leaky(x, out):
        out[:] = np.where(x > 0, x, 0.5 * x)

    monkeypatch.setattr(relu, "serial", leaky)
    result = check.check_case(case, registry.kernel_function("cpu", "pointwise", "relu_forward"), rng)
    assert not result.ok
    assert result.detail == "the one-thread and parallel versions of relu_forward differ in arguments [1]"


def test_a_streamed_version_that_differs_fails_its_rows(monkeypatch):
    """An element-wise kernel's streamed version (large outputs, past the caches) runs in every row as well."""
    from numconv.kernels.cpu import pointwise

    entry = registry.entry("add_forward")
    case, rng = entry.build(entry.configs[0]), np.random.default_rng(0)

    def subtracted(a, b, out):
        out[:] = a - b

    monkeypatch.setattr(pointwise.add_forward, "_streamed", subtracted)
    result = check.check_case(case, registry.kernel_function("cpu", "pointwise", "add_forward"), rng)
    assert not result.ok
    assert result.detail == "the streamed and parallel versions of add_forward differ in arguments [2]"


def test_a_kernel_added_without_an_entry_is_caught(monkeypatch):
    from numconv.kernels.cpu import pool

    monkeypatch.setattr(pool, "max_pool_forward_faster", pool.max_pool_forward, raising=False)
    monkeypatch.setattr(pool, "__all__", pool.__all__ + ["max_pool_forward_faster"])
    assert registry.coverage_gaps("cpu") == (["pool.max_pool_forward_faster"], [])


def test_the_registry_takes_every_branch_of_every_cpu_kernel():
    """Every line and branch of every CPU kernel file is run, as Python, by some registry configuration: a mutant
    anywhere in them meets a row that sees it. (The CUDA kernels' twin of this test is tests/test_cuda.py's, so
    that the test runner's workers, which take whole files, run the two at once. It stays in this file of many
    tests: the runner hands out the files with the most tests first, and in a file of its own it ran last, CI 17:30
    -> 19:12.)"""
    from spec import coverage

    gaps = coverage.measure("cpu")
    assert not gaps, "the registry leaves out " + "; ".join(coverage.describe(gaps))


def test_every_cpu_file_that_defines_a_kernel_is_measured_by_the_coverage_check():
    """A kernel file left out of ``coverage.KERNEL_FILES`` escapes the branch check above whatever the registry
    runs: every file of numconv/kernels/cpu with a kernel decorator at the start of a line is in it, or in
    ``coverage.NOT_KERNEL_FILES`` with the reason."""
    import re
    from pathlib import Path

    from spec import coverage

    root = Path(coverage.ROOT)
    defining = {str(path.relative_to(root)) for path in (root / "numconv/kernels/cpu").glob("*.py")
                if re.search(r"^@(njit|parallel_kernel|_task)\b", path.read_text(), re.MULTILINE)}
    assert "numconv/kernels/cpu/conv.py" in defining
    assert defining - set(coverage.NOT_KERNEL_FILES) <= set(coverage.KERNEL_FILES["cpu"])


def test_registry_spans_dimensions_groups_and_ceil_mode():
    convs = configs.CONV_CONFIGS
    assert {len(c.input_shape) for c in convs} == {1, 2, 3}
    assert any(c.groups == 2 for c in convs) and any(c.groups == c.in_channels > 1 for c in convs)
    assert any(c.padding_right and c.padding_right != c.padding for c in convs)
    assert any(p.ceil_mode for p in configs.MAX_POOL_CONFIGS) and any(p.ceil_mode for p in configs.AVG_POOL_CONFIGS)
    assert any(not p.count_include_pad for p in configs.AVG_POOL_CONFIGS)


# --- planted bugs ---------------------------------------------------------------------------------------------------


def python_conv_forward(bug=None):
    """conv_forward in plain Python loops (same signature as the kernel), with an optional planted bug."""

    def kernel(x, weight, bias, out, stride, padding, dilation, groups):
        batch, channels = x.shape[:2]
        out_channels, group_in = weight.shape[:2]
        group_out = out_channels // groups
        for n, o in itertools.product(range(batch), range(out_channels)):
            first = (o // group_out) * group_in if bug != "group offset" else (o % groups) * group_in
            for position in np.ndindex(*out.shape[2:]):
                total = bias[o]
                for c in range(group_in):
                    for tap in np.ndindex(*weight.shape[2:]):
                        index = []
                        for axis in range(3):
                            step = stride[axis] if not (bug == "stride ignored" and axis == 1) else 1
                            shift = 1 if bug == "window shifted" and axis == 2 else 0
                            index.append(position[axis] * step - padding[axis] + tap[axis] * dilation[axis] + shift)
                        if all(0 <= i < s for i, s in zip(index, x.shape[2:])):
                            total += weight[(o, c) + tap] * x[(n, first + c) + tuple(index)]
                out[(n, o) + position] = total

    return kernel


def python_conv_grad_input(bug=None):
    """conv_grad_input in plain Python loops; 'missing term' drops the last tap of every window."""

    def kernel(grad_output, weight, grad_input, stride, padding, dilation, groups):
        grad_input[...] = 0
        out_channels, group_in = weight.shape[:2]
        group_out = out_channels // groups
        taps = list(np.ndindex(*weight.shape[2:]))
        if bug == "missing term":
            taps = taps[:-1]
        for n, o in itertools.product(range(grad_output.shape[0]), range(out_channels)):
            first = (o // group_out) * group_in
            for position in np.ndindex(*grad_output.shape[2:]):
                for c, tap in itertools.product(range(group_in), taps):
                    index = tuple(position[a] * stride[a] - padding[a] + tap[a] * dilation[a] for a in range(3))
                    if all(0 <= i < s for i, s in zip(index, grad_input.shape[2:])):
                        grad_input[(n, first + c) + index] += weight[(o, c) + tap] * grad_output[(n, o) + position]

    return kernel


def python_max_pool_forward(bug=None):
    """max_pool_forward in Python; 'padding counts' lets a zero pad win, 'last tie' keeps the last maximum."""

    def kernel(x, out, indices, kernel_size, stride, padding, dilation):
        for n, c in np.ndindex(*x.shape[:2]):
            for position in np.ndindex(*out.shape[2:]):
                best, best_index = -np.inf, -1
                for tap in np.ndindex(*kernel_size):
                    index = tuple(position[a] * stride[a] - padding[a] + tap[a] * dilation[a] for a in range(3))
                    inside = all(0 <= i < s for i, s in zip(index, x.shape[2:]))
                    value = x[(n, c) + index] if inside else (0.0 if bug == "padding counts" else -np.inf)
                    if value > best or (bug == "last tie" and value == best):
                        best = value
                        best_index = np.ravel_multi_index(index, x.shape[2:]) if inside else 0
                out[(n, c) + position] = best
                indices[(n, c) + position] = best_index

    return kernel


def python_lrn_forward(bug=None):
    """lrn_forward in Python; 'one channel short' drops the last channel of each window (Chainer's old bug)."""

    def kernel(x, out, size, alpha, beta, k):
        channels = x.shape[1]
        for n, c, s in np.ndindex(*x.shape):
            lo, hi = max(c - size // 2, 0), min(c + (size - 1) // 2 + 1, channels)
            if bug == "one channel short":
                hi = min(c + (size - 1) // 2, channels)
            total = sum(float(x[n, j, s]) ** 2 for j in range(lo, hi))
            out[n, c, s] = x[n, c, s] / (k + alpha / size * total) ** beta

    return kernel


def python_avg_pool_forward(bug=None):
    """avg_pool_forward in Python; 'divisor ignores padding' always divides by the inside count, 'end padding
    taken from the start' counts the padding after an axis as wide as the padding before it."""

    def kernel(x, out, kernel_size, stride, padding, padding_end, count_include_pad):
        ends = padding if bug == "end padding taken from the start" else padding_end
        for n, c in np.ndindex(*x.shape[:2]):
            for position in np.ndindex(*out.shape[2:]):
                total, inside_count, padded_count = 0.0, 0, 0
                for tap in np.ndindex(*kernel_size):
                    index = tuple(position[a] * stride[a] - padding[a] + tap[a] for a in range(3))
                    if all(-p <= i < s + e for i, s, p, e in zip(index, x.shape[2:], padding, ends)):
                        padded_count += 1
                    if all(0 <= i < s for i, s in zip(index, x.shape[2:])):
                        total += x[(n, c) + index]
                        inside_count += 1
                use_padded = count_include_pad and bug != "divisor ignores padding"
                out[(n, c) + position] = total / (padded_count if use_padded else inside_count)

    return kernel


MUTANT_CASES = [
    # (kernel factory, bug, case builder, configuration)
    (python_conv_forward, "window shifted", cases.conv_forward_case, configs.CONV_CONFIGS[3]),
    (python_conv_forward, "stride ignored", cases.conv_forward_case, configs.CONV_CONFIGS[3]),
    (python_conv_forward, "group offset", cases.conv_forward_case, ConvConfig(1, 4, 4, (4, 4), (2, 2), groups=2)),
    (python_conv_grad_input, "missing term", cases.conv_grad_input_case, configs.CONV_CONFIGS[1]),
    (python_max_pool_forward, "padding counts", cases.max_pool_forward_case, configs.MAX_POOL_CONFIGS[0]),
    (python_max_pool_forward, "last tie", cases.max_pool_forward_case,
     PoolConfig(1, 1, (6,), (3,), (1,))),
    (python_avg_pool_forward, "divisor ignores padding", cases.avg_pool_forward_case, configs.AVG_POOL_CONFIGS[0]),
    (python_avg_pool_forward, "end padding taken from the start", cases.avg_pool_forward_case,
     next(cfg for cfg in configs.AVG_POOL_CONFIGS if cfg.padding_right and cfg.count_include_pad)),
    (python_lrn_forward, "one channel short", cases.lrn_forward_case, registry.entry("lrn_forward").configs[0]),
]


@pytest.mark.parametrize("factory,bug,build,config", MUTANT_CASES, ids=[m[1] for m in MUTANT_CASES])
def test_checker_catches_planted_bug(factory, bug, build, config):
    rng = np.random.default_rng(1)
    # the same Python kernel without the bug passes, so the failure below is the bug's doing
    assert check.check_case(build(config), factory(None), rng, dtypes=(np.float64,)).ok
    result = check.check_case(build(config), factory(bug), rng, dtypes=(np.float64,))
    assert not result.ok, f"planted bug '{bug}' escaped: {result.detail}"


def test_connectivity_probe_reports_the_missing_triples():
    case = cases.conv_grad_input_case(configs.CONV_CONFIGS[1])
    message = check.connectivity_mismatch(case, python_conv_grad_input("missing term"))
    assert message.startswith("missing") and "0 extra" in message
    assert check.connectivity_mismatch(case, python_conv_grad_input(None)) == ""


def test_spec_checks_the_naive_reference_too():
    """tests/naive.py is a second oracle; the spec holds it equal to the equations as well."""

    def naive_conv_forward(x, weight, bias, out, stride, padding, dilation, groups):
        right = [(o - 1) * s + d * (k - 1) + 1 - n - p for o, s, d, k, n, p in
                 zip(out.shape[2:], stride, dilation, weight.shape[2:], x.shape[2:], padding)]
        pads = [(p, max(r, 0)) for p, r in zip(padding, right)]
        out[...] = naive.conv(x, weight, bias, stride, pads, dilation, groups)[(Ellipsis,) + tuple(
            slice(0, o) for o in out.shape[2:])]

    for config in configs.CONV_CONFIGS:
        assert check.check_case(cases.conv_forward_case(config), naive_conv_forward,
                                np.random.default_rng(2), dtypes=(np.float64,)).ok

    def naive_lrn_forward(x, out, size, alpha, beta, k):
        out[...] = naive.local_response_norm(x, size, alpha, beta, k)

    lrn = registry.entry("lrn_forward")
    assert lrn.name == "lrn_forward"
    for config in lrn.configs:
        assert check.check_case(cases.lrn_forward_case(config), naive_lrn_forward, np.random.default_rng(3)).ok


def test_error_bound_is_below_target_and_shrinks_with_trials():
    case = cases.linear_forward_case(ShapeConfig((3, 5, 4)))
    from numconv.kernels.cpu import dense

    one = check.check_case(case, dense.linear_forward, np.random.default_rng(0), dtypes=(np.float32,), trials=1)
    many = check.check_case(case, dense.linear_forward, np.random.default_rng(0), dtypes=(np.float32,))
    assert one.ok and many.ok
    assert many.bound < check.TARGET_BOUND < one.bound


def test_a_row_whose_identity_test_bound_misses_the_target_fails(monkeypatch):
    """A right kernel passes its row only where the identity test could have caught a wrong one: values drawn from
    too narrow a range (a bound of 0.5) fail the row, in the tests and in ``python -m spec check``."""
    row = next(row for row in CPU_ROWS if row.kernel_name == "linear_forward")
    assert check.check_row(row, np.random.default_rng(0)).ok
    narrow = check.Result(True, 64, 0.5, "identity")
    monkeypatch.setattr(check, "check_case", lambda *args, **kwargs: narrow)
    result = check.check_row(row, np.random.default_rng(0))
    assert not result.ok and "5.0e-01" in result.detail
    monkeypatch.setattr(registry, "rows", lambda *args, **kwargs: iter([row]))
    assert check.main(["--backend", "cpu"]) == 1


def test_the_paths_run_takes_one_trial_per_dtype_without_the_probe_or_the_bound(monkeypatch):
    """``spec check --paths`` (what ``spec coverage`` measures) runs a row's kernel once per dtype, never probes
    its connectivity and asks no error bound of it; the full check does all three."""
    row = next(row for row in CPU_ROWS if row.kernel_name == "linear_forward")
    full = check.check_row(row, np.random.default_rng(0))
    assert full.ok and full.probed and full.trials > len(check.DTYPES)
    monkeypatch.setattr(check, "connectivity_mismatch", lambda *args: pytest.fail("the paths run probed"))
    paths = check.check_row(row, np.random.default_rng(0), paths=True)
    assert paths.ok and not paths.probed and paths.trials == len(check.DTYPES)
    assert not paths.bound < check.TARGET_BOUND  # one trial's bound, which the paths run does not require


def test_numeric_rows_are_evaluated_past_float64():
    """exp(x) - 1 at x = 1e-20 is x (1 + 5e-21) to 50 digits; in float64's precision it would come out 0, and a
    reference no better than the kernel it judges could not see the kernel's last bits."""
    x = ops.symbol_array("x", (1,))
    evaluate = check.Evaluator({"x": x}, {"y": np.array([sp.exp(x[0]) - 1], dtype=object)}, "numeric")
    value = evaluate({"x": np.array([1e-20])})["y"][0]
    with mpmath.workdps(check.NUMERIC_DIGITS):
        assert abs(value / mpmath.mpf(1e-20) - 1 - mpmath.mpf("5e-21")) < mpmath.mpf("1e-30")
    assert check._numeric_error_ulps(np.array([0.0]), np.array([value], dtype=object), np.float64) > 0


def test_term_count_of_an_expanded_sum_is_its_length_and_other_forms_are_expanded():
    w, x, y = sp.symbols("w x y")
    assert check._term_count(3 * w * x + w * y + 2 + x ** 2) == 4
    assert check._term_count(w * (x + y) + x) == 3
    assert check._term_count((x + 1) ** 2) == 3


def test_the_fast_product_is_the_expression_sympy_builds():
    """``ops.product``, which skips sympy's flattening for two plain symbols, gives the very expression ``*`` does
    (the same factors in the same order, so equal, with the same hash and the same printed form): names that sort
    differently as strings and as numbers, both orders of the operands, and the operands it leaves to ``*``."""
    w, x, g = ops.symbol_array("w", (2, 11)), ops.symbol_array("x", (2, 11)), ops.symbol_array("g", (3,))
    pairs = [(w[1, 10], x[1, 9]), (x[1, 9], w[1, 10]), (x[0, 10], x[0, 9]), (g[2], x[1, 0]), (x[1, 0], g[2]),
             (g[0], sp.Integer(1)), (g[1], sp.Rational(1, 9)), (sp.Integer(-3), x[0, 1]), (x[0, 1], x[0, 1])]
    for a, b in pairs:
        built, expected = ops.product(a, b), a * b
        assert built == expected and built.args == expected.args and hash(built) == hash(expected)
        assert sp.srepr(built) == sp.srepr(expected)
    config = ConvConfig(1, 2, 2, (3, 4), (2, 3), padding=(1, 1), groups=2)
    inputs, y = ops.conv(config)
    window = config.window
    for (n, o, *position), expression in np.ndenumerate(y):
        terms = [inputs["bias"][o]] + [inputs["weight"][(o, 0) + tap] * inputs["x"][(n, o) + index]
                                       for tap, index, inside in window.window(tuple(position)) if inside]
        assert sp.srepr(expression) == sp.srepr(sp.Add(*terms))


def test_integer_code_evaluates_as_lambdify():
    """The spec's own printer (``check.integer_code``) gives, on integers, lambdify's values exactly: sums with
    negative and large coefficients, powers, a Max, a Heaviside at, above and below 0; and it declines what Python's
    integers would not evaluate exactly (a rational, exp), which lambdify then takes."""
    a, b, c = sp.symbols("a b c")
    expressions = [3 * a * b - 7 * c ** 2 + 2 ** 40 * a - 5, sp.Max(a, b, c), sp.Max(a - b, 0),
                   b * sp.Heaviside(a - sp.Max(b, c, evaluate=False), evaluate=False), sp.Integer(0)]
    evaluate = check._integer_function([[a, b], [c]], expressions)
    reference = sp.lambdify([[a, b], [c]], expressions, modules=check._PIECEWISE_MODULES,
                            printer=check._printer("piecewise"))
    for values in itertools.product((-3, 0, 2, 5), repeat=3):
        args = [list(values[:2]), [values[2]]]
        assert evaluate(*args) == reference(*args)
    for declined in (a / 3, sp.exp(a), a ** -1):
        with pytest.raises(check.NotIntegral):
            check.integer_code(declined)


def test_the_max_derivative_is_sympys():
    symbols = sp.symbols("a b c d")
    for count in (2, 4):
        term = sp.Max(*symbols[:count])
        for symbol in symbols[:count]:
            assert sp.srepr(ops._derivative(term, symbol)) == sp.srepr(sp.diff(term, symbol))


def test_spec_check_command_exits_nonzero_on_failure(monkeypatch, capsys):
    monkeypatch.setattr(registry, "ENTRIES", (registry.Entry("conv", "conv_forward", cases.conv_forward_case,
                                                             configs.CONV_CONFIGS[:1]),))
    assert check.main(["--backend", "cpu"]) == 0
    monkeypatch.setattr(registry, "kernel_function", lambda *args: python_conv_forward("window shifted"))
    assert check.main(["--backend", "cpu"]) == 1
    assert "FAIL" in capsys.readouterr().out


@settings(max_examples=12, deadline=None)
@given(config=conv_configs())
def test_random_conv_configurations_equal_the_spec(config):
    for entry_name in ("conv_forward", "conv_grad_input", "conv_grad_weight"):
        entry = registry.entry(entry_name)
        result = check.check_case(entry.build(config), registry.kernel_function("cpu", "conv", entry_name),
                                  np.random.default_rng(0), dtypes=(np.float32,))
        assert result.ok, f"{entry_name} {config.label()}: {result.detail}"


@pytest.mark.parametrize("cfg", configs.TRANSPOSED_CONFIGS, ids=lambda cfg: cfg.label())
def test_the_transposed_equations_are_the_adjoint_of_the_convolutions(cfg):
    """<conv(x, w), y> = <x, conv_transpose(y, w)> exactly, as polynomials in every x, y and w."""
    assert ops.transposed_is_adjoint(cfg)


def test_the_adjoint_check_catches_a_wrong_transposed_window(monkeypatch):
    def shifted(out_index, size, kernel, stride, pad, dilation):
        return windows.transposed_sources(out_index + 1, size, kernel, stride, pad, dilation)

    monkeypatch.setattr(ops, "transposed_sources", shifted)
    assert not ops.transposed_is_adjoint(configs.TRANSPOSED_CONFIGS[0])


def test_the_transposed_output_size_is_the_one_numconv_computes():
    from numconv import geometry

    for size, kernel, stride, pad, extra, dilation in itertools.product(range(1, 5), range(1, 4), range(1, 4),
                                                                        range(3), range(3), range(1, 3)):
        if extra < stride:
            assert windows.transposed_output_size(size, kernel, stride, pad, extra, dilation) == \
                geometry.conv_transpose_output_size(size, kernel, stride, pad, extra, dilation)
