"""Hypothesis strategies for random window configurations, shared by the CPU and CUDA spec tests."""
from hypothesis import assume, strategies as st

from numconv import geometry
from spec.ops import ConvConfig, PoolConfig


@st.composite
def conv_configs(draw, max_batch: int = 1):
    """Convolutions in 1 to 3 dimensions with kernel, stride and dilation up to 3, 3, 2, padding up to 1 before
    and after each axis (drawn apart) and 1 or 2 groups; every window fits the input."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, 1)) for _ in range(ndim))
    padding_right = tuple(draw(st.integers(0, 1)) for _ in range(ndim))
    shape = tuple(max(draw(st.integers(1, 4)), d * (k - 1) + 1) for k, d in zip(kernel, dilation))
    return ConvConfig(draw(st.integers(1, max_batch)), groups * draw(st.integers(1, 2)),
                      groups * draw(st.integers(1, 2)), shape, kernel, stride, padding, dilation, groups,
                      padding_right=padding_right)


@st.composite
def pool_configs(draw):
    """Pooling windows in 1 to 3 dimensions, padding before and after each axis (drawn apart) up to the kernel
    less one, as ONNX allows, either ceil_mode and divisor rule; every window holds an input element."""
    ndim = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    padding_right = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    shape = tuple(draw(st.integers(k, k + 3)) for k in kernel)
    ceil_mode = draw(st.booleans())
    try:
        geometry.pool_geometry(shape, kernel, stride, tuple(zip(padding, padding_right)), 1, ceil_mode)
    except ValueError:
        assume(False)  # a window of padding alone: numconv refuses it
    return PoolConfig(1, 2, shape, kernel, stride, padding, ceil_mode=ceil_mode,
                      count_include_pad=draw(st.booleans()), padding_right=padding_right)
