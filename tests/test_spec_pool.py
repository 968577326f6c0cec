"""The CPU pooling kernels against the spec: the registry's pooling rows, every window each pooling route compiles
with its sizes as constants, and random pooling configurations."""
import math

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


def _takes_rows_route(name, kernel, stride, before, dilation, in_shape, out_shape) -> bool:
    """Whether the forward pooling ``name`` takes the rows route for this geometry (``_row_window``; the average's
    short rows from ``SHORT_AVERAGE_ROW`` outputs)."""
    from numconv.kernels.cpu.pool import SHORT_AVERAGE_ROW, _row_window

    if name == "avg_pool_forward" and out_shape[2] < SHORT_AVERAGE_ROW:
        return False
    return _row_window(in_shape, out_shape, kernel, stride, before, dilation) is not None


def _pool_geometries(name):
    """Each CPU registry row of the pooling kernel ``name``, as the kernel takes it: (kernel, stride, padding before,
    padding after, dilation, input shape, output shape) as 3D tuples (1D and 2D with leading singleton axes)."""
    for row in POOL_ROWS:
        if row.kernel_name == name:
            axes = (windows.Axis(1, 1),) * (3 - len(row.config.window.axes)) + row.config.window.axes
            yield tuple(tuple(getattr(a, field) for a in axes)
                        for field in ("kernel", "stride", "pad_left", "right", "dilation", "size", "out_size"))


@pytest.mark.parametrize("name", ["max_pool_forward", "max_pool_forward_values", "max_pool_backward",
                                  "avg_pool_forward", "avg_pool_backward"])
def test_every_window_the_cpu_pooling_takes_whole_meets_the_spec(name):
    """Each window of WHOLE_WINDOWS is a loop of its own, compiled with its sizes as constants: each must have rows
    in the registry, or a wrong constant in one of them would pass."""
    from numconv.kernels.cpu.pool import WHOLE_WINDOWS

    checked = set()
    for kernel, stride, before, _, dilation, in_shape, out_shape in _pool_geometries(name):
        # the forward passes that the rows route takes compile no whole-window loop of the passes
        forward = name.endswith("forward") or name.endswith("values")
        if dilation[1] == dilation[2] == 1 and not (
                forward and _takes_rows_route(name, kernel, stride, before, dilation, in_shape, out_shape)):
            checked.add((kernel[1], kernel[2], stride[2]))
    assert set(WHOLE_WINDOWS) <= checked, set(WHOLE_WINDOWS) - checked


@pytest.mark.parametrize("name", ["max_pool_forward", "max_pool_forward_values", "avg_pool_forward"])
def test_every_window_of_the_cpu_rows_route_meets_the_spec(name):
    """The rows route compiles each window of ROW_WINDOWS with its sizes as constants: each must have a row in the
    registry that the route takes (by the route's own rule), or a wrong constant in one of them would pass."""
    from numconv.kernels.cpu.pool import ROW_WINDOWS, SHORT_ROW

    checked = set()
    for kernel, stride, before, _, dilation, in_shape, out_shape in _pool_geometries(name):
        if out_shape[2] >= SHORT_ROW and _takes_rows_route(name, kernel, stride, before, dilation, in_shape,
                                                             out_shape):
            checked.add((*kernel, stride[2]))
    assert set(ROW_WINDOWS) <= checked, set(ROW_WINDOWS) - checked


@pytest.mark.parametrize("name", ["max_pool_forward", "max_pool_forward_values", "avg_pool_forward"])
def test_rows_shorter_than_a_block_meet_the_spec_in_each_dimension(name):
    """The rows route takes rows shorter than SHORT_ROW too, a block of outputs per row (``_short_rows_of``) with the
    window's sizes as constants: the registry has such rows in 1D, 2D and 3D, and planes of at least a block of
    outputs, whose first rows' blocks run on into the next rows (a plane per task: every row of a smaller one is
    computed on its own)."""
    from numconv.kernels.cpu.pool import SHORT_AVERAGE_BLOCK, SHORT_BLOCK, SHORT_ROW

    block = SHORT_AVERAGE_BLOCK if name == "avg_pool_forward" else SHORT_BLOCK
    dimensions, running_on = set(), set()
    for kernel, stride, before, _, dilation, in_shape, out_shape in _pool_geometries(name):
        if out_shape[2] < SHORT_ROW and _takes_rows_route(name, kernel, stride, before, dilation, in_shape,
                                                            out_shape):
            dimensions.add(3 if kernel[0] > 1 else 2 if kernel[1] > 1 else 1)
            if math.prod(out_shape) >= block:
                running_on.add(kernel)
    assert dimensions == {1, 2, 3}
    assert running_on


def test_every_width_of_the_average_backward_tiling_route_meets_the_spec():
    """The average's backward compiles its tiling route for each width of TILE_WIDTHS: each needs a registry row that
    the route takes (by its own rule)."""
    from numconv.kernels.cpu.pool import TILE_WIDTHS, _tile_width

    checked = set()
    for kernel, stride, before, after, _, _, _ in _pool_geometries("avg_pool_backward"):
        if _tile_width(kernel, stride, before, after) is not None:
            checked.add(kernel[2])
    assert set(TILE_WIDTHS) <= checked, set(TILE_WIDTHS) - checked


def test_every_window_of_the_average_backward_phases_route_meets_the_spec():
    """The average's backward compiles its phases route for each window of PHASE_WINDOWS: each needs a registry row
    that the route takes (by its own rule)."""
    from numconv.kernels.cpu.pool import PHASE_WINDOWS, _phase_window

    checked = set()
    for kernel, stride, _, _, _, _, out_shape in _pool_geometries("avg_pool_backward"):
        if _phase_window((1, 1, out_shape[2]), kernel, stride) is not None:
            checked.add(((kernel[2] - 1) // stride[2] + 1, stride[2]))
    assert set(PHASE_WINDOWS) <= checked, set(PHASE_WINDOWS) - checked


@settings(max_examples=12, deadline=None)
@given(config=pool_configs())
def test_random_pool_configurations_equal_the_spec(config):
    for name in ("max_pool_forward", "avg_pool_forward", "avg_pool_backward"):
        result = check.check_case(registry.entry(name).build(config), registry.kernel_function("cpu", "pool", name),
                                  np.random.default_rng(0), dtypes=(np.float64,))
        assert result.ok, f"{name} {config.label()}: {result.detail}"
