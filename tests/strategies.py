"""Hypothesis strategies for random window configurations, shared by the CPU and CUDA spec tests."""
from hypothesis import strategies as st

from spec.ops import ConvConfig, PoolConfig


@st.composite
def conv_configs(draw, max_batch: int = 1):
    """Convolutions in 1 to 3 dimensions with kernel, stride and dilation up to 3, 3, 2, padding up to 1 and
    1 or 2 groups; every window fits the input."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, 1)) for _ in range(ndim))
    shape = tuple(max(draw(st.integers(1, 4)), d * (k - 1) + 1) for k, d in zip(kernel, dilation))
    return ConvConfig(draw(st.integers(1, max_batch)), groups * draw(st.integers(1, 2)),
                      groups * draw(st.integers(1, 2)), shape, kernel, stride, padding, dilation, groups)


@st.composite
def pool_configs(draw):
    """Pooling windows in 1 to 3 dimensions, padding at most half the kernel, either ceil_mode and divisor rule."""
    ndim = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    shape = tuple(draw(st.integers(k, k + 3)) for k in kernel)
    return PoolConfig(1, 2, shape, kernel, stride, padding, ceil_mode=draw(st.booleans()),
                      count_include_pad=draw(st.booleans()))
