"""The CPU pooling kernels against the spec: the registry's pooling rows, every window each pooling route compiles
with its sizes as constants, and random pooling configurations."""
import numpy as np
import pytest
from hypothesis import given, settings

from spec import check, registry, windows
from tests.strategies import pool_configs

POOL_ROWS = [row for row in registry.rows(["cpu"]) if row.entry.module == "pool"]


@pytest.mark.parametrize("row", POOL_ROWS, ids=[f"{r.kernel_name}-{r.label}" for r in POOL_ROWS])
def test_cpu_pooling_kernel_equals_spec(row):
    result = check.check_row(row, np.random.default_rng(0))
    assert result.ok, result.detail


def _pool_geometries(name):
    """Each CPU registry row of the pooling kernel ``name``, as the kernel takes it: (kernel, stride, padding before,
    padding after, dilation) as 3D tuples (1D and 2D with leading singleton axes), and the output's width."""
    for row in POOL_ROWS:
        if row.kernel_name == name:
            axes = (windows.Axis(1, 1),) * (3 - len(row.config.window.axes)) + row.config.window.axes
            yield tuple(tuple(getattr(a, field) for a in axes)
                        for field in ("kernel", "stride", "pad_left", "right", "dilation")) + (axes[-1].out_size,)


@pytest.mark.parametrize("name", ["max_pool_forward", "max_pool_forward_values", "max_pool_backward",
                                  "avg_pool_forward", "avg_pool_backward"])
def test_every_window_the_cpu_pooling_takes_whole_meets_the_spec(name):
    """Each window of WHOLE_WINDOWS is a loop of its own, compiled with its sizes as constants: each must have rows
    in the registry, or a wrong constant in one of them would pass."""
    from numconv.kernels.cpu.pool import WHOLE_WINDOWS

    checked = set()
    for kernel, stride, _, _, dilation, _ in _pool_geometries(name):
        if dilation[1] == dilation[2] == 1:
            checked.add((kernel[1], kernel[2], stride[2]))
    assert set(WHOLE_WINDOWS) <= checked, set(WHOLE_WINDOWS) - checked


@pytest.mark.parametrize("name", ["max_pool_forward", "max_pool_forward_values", "avg_pool_forward"])
def test_every_window_of_the_cpu_rows_route_meets_the_spec(name):
    """The rows route compiles each window of ROW_WINDOWS with its sizes as constants: each must have a row in the
    registry that the route takes (by the route's own rule), or a wrong constant in one of them would pass."""
    from numconv.kernels.cpu.pool import ROW_WINDOWS, _row_window

    checked = set()
    for kernel, stride, before, _, dilation, out_w in _pool_geometries(name):
        if _row_window(out_w, kernel, stride, before, dilation) is not None:
            checked.add((*kernel, stride[2]))
    assert set(ROW_WINDOWS) <= checked, set(ROW_WINDOWS) - checked


def test_every_width_of_the_average_backward_tiling_route_meets_the_spec():
    """The average's backward compiles its tiling route for each width of TILE_WIDTHS: each needs a registry row that
    the route takes (by its own rule)."""
    from numconv.kernels.cpu.pool import TILE_WIDTHS, _tile_width

    checked = set()
    for kernel, stride, before, after, _, _ in _pool_geometries("avg_pool_backward"):
        if _tile_width(kernel, stride, before, after) is not None:
            checked.add(kernel[2])
    assert set(TILE_WIDTHS) <= checked, set(TILE_WIDTHS) - checked


def test_every_window_of_the_average_backward_phases_route_meets_the_spec():
    """The average's backward compiles its phases route for each window of PHASE_WINDOWS: each needs a registry row
    that the route takes (by its own rule)."""
    from numconv.kernels.cpu.pool import PHASE_WINDOWS, _phase_window

    checked = set()
    for kernel, stride, _, _, _, out_w in _pool_geometries("avg_pool_backward"):
        if _phase_window((1, 1, out_w), kernel, stride) is not None:
            checked.add(((kernel[2] - 1) // stride[2] + 1, stride[2]))
    assert set(PHASE_WINDOWS) <= checked, set(PHASE_WINDOWS) - checked


@settings(max_examples=12, deadline=None)
@given(config=pool_configs())
def test_random_pool_configurations_equal_the_spec(config):
    for name in ("max_pool_forward", "avg_pool_forward", "avg_pool_backward"):
        result = check.check_case(registry.entry(name).build(config), registry.kernel_function("cpu", "pool", name),
                                  np.random.default_rng(0), dtypes=(np.float64,))
        assert result.ok, f"{name} {config.label()}: {result.detail}"
