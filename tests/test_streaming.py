"""Element-wise kernels that stream large outputs past the caches: every version computes the same, the streamed
version writes whole vectors with non-temporal stores, and a call takes it only where its output is large and is no
input's memory."""
import platform
import re

import numpy as np
import pytest
from numba.core.errors import TypingError

from numconv.kernels.cpu import activation, parallel, pointwise, streaming
from numconv.kernels.cpu.parallel import every_call
from numconv.kernels.scalar import product

#: kernel -> (inputs it takes before its output, as (kind, ...): "x" a float array, "mask" a 0/1 array, "scalar" a
#: number; the NumPy reference, in float64, of the output)
STREAMING_KERNELS = {
    pointwise.relu_forward: (("x",), lambda x: np.where(x <= 0, 0.0, x)),
    pointwise.relu_backward: (("x", "x"), lambda g, x: np.where(x <= 0, 0.0, g)),
    pointwise.dropout_forward: (("x", "mask", "scalar"), lambda x, m, s: x * m * s),
    pointwise.dropout_backward: (("x", "mask", "scalar"), lambda g, m, s: g * m * s),
    pointwise.add_forward: (("x", "x"), lambda a, b: a + b),
    activation.leaky_relu_forward: (("x", "scalar"), lambda x, s: np.where(x <= 0, s * x, x)),
    activation.leaky_relu_backward: (("x", "x", "scalar"), lambda g, x, s: np.where(x <= 0, s * g, g)),
    activation.sigmoid_forward: (("x",), lambda x: 1.0 / (1.0 + np.exp(-x))),
    activation.sigmoid_backward: (("x", "x"), lambda g, y: g * y * (1.0 - y)),
    activation.tanh_forward: (("x",), np.tanh),
    activation.tanh_backward: (("x", "x"), lambda g, y: g * (1.0 - y * y)),
    activation.multiply_forward: (("x", "x"), lambda a, b: a * b),
}


def _operands(kinds, size, dtype, offset, rng):
    """Arrays of ``size`` elements starting ``offset`` elements into their buffers (so that the first 64-byte boundary
    falls inside them), and scalars in ``dtype``."""
    operands = []
    for kind in kinds:
        if kind == "scalar":
            operands.append(dtype(0.25))
        elif kind == "mask":
            operands.append((rng.random(size + offset) < 0.5)[offset:])
        else:
            values = rng.standard_normal(size + offset).astype(dtype)
            values[offset::7] = 0.0  # the ReLUs' boundary
            operands.append(values[offset:])
    return operands


def _on_boundary(buffer):
    """``buffer`` from its first element on a 64-byte boundary (NumPy aligns to 16 bytes at most)."""
    return buffer[-buffer.ctypes.data % streaming.LINE // buffer.itemsize:]


def test_the_kernels_that_stream_are_the_element_wise_ones():
    declared = {kernel for module in (pointwise, activation) for kernel in map(module.__dict__.get, module.__all__)
                if kernel.streams}
    assert declared == set(STREAMING_KERNELS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", list(STREAMING_KERNELS), ids=lambda kernel: kernel.__name__)
def test_every_version_computes_the_reference_across_blocks_and_boundaries(kernel, dtype, rng):
    """Two blocks and a part of a third, the output starting off a 64-byte boundary (3 elements in) and on one; and
    sizes shorter than a vector. The versions agree bit for bit; the reference (in float64) within a few units of the
    dtype's precision (tanh's gradient subtracts y * y, rounded in the dtype, from 1)."""
    kinds, reference = STREAMING_KERNELS[kernel]
    eps = np.finfo(dtype).eps
    for size, offset in ((2 * streaming.BLOCK + 37, 3), (2 * streaming.BLOCK + 37, 0), (5, 1), (0, 0)):
        operands = _operands(kinds, size, dtype, offset, rng)
        expected = reference(*(o.astype(np.float64) if isinstance(o, np.ndarray) else float(o) for o in operands))
        results = {}
        for version in parallel.VERSIONS:
            buffer = _on_boundary(np.full(size + offset + 1 + streaming.LINE, -7.0, dtype))
            out = buffer[offset:offset + size]
            with every_call(version):
                kernel(*operands, out)
            assert (buffer[:offset] == -7.0).all() and (buffer[offset + size:] == -7.0).all(), \
                f"{version} wrote outside its output"
            results[version] = out
        np.testing.assert_array_equal(results["streamed"], results["serial"], err_msg=f"{size} from {offset}")
        np.testing.assert_array_equal(results["parallel"], results["serial"], err_msg=f"{size} from {offset}")
        np.testing.assert_allclose(results["serial"], expected, rtol=8 * eps, atol=8 * eps * 16,
                                   err_msg=f"{size} elements from {offset}")


def test_an_output_not_aligned_to_its_elements_is_written_all_the_same(rng):
    """An array whose data starts at an odd byte cannot reach a 64-byte boundary: every element is stored as usual."""
    size = 3 * 16 + 5
    x = rng.standard_normal(size).astype(np.float32)
    raw = np.zeros(size * 4 + 1, np.uint8)
    out = raw[1:].view(np.float32)
    with every_call("streamed"):
        pointwise.add_forward(x, x, out)
    np.testing.assert_array_equal(out, x + x)


def test_nan_passes_every_version_as_it_does_the_plain_one():
    x = np.array([np.nan, -1.0, 2.0, -np.inf] * 20, np.float32)
    results = {}
    for version in parallel.VERSIONS:
        out = np.empty_like(x)
        with every_call(version):
            pointwise.relu_forward(x, out)
        results[version] = out
    np.testing.assert_array_equal(results["streamed"], results["serial"])
    assert np.isnan(results["streamed"][::4]).all() and (results["streamed"][3::4] == 0).all()


def test_a_large_output_streams_and_a_small_or_in_place_one_does_not(monkeypatch):
    """From ``STREAM_MIN_BYTES`` of output, where no input shares its memory (monkeypatched small: a real threshold
    is a cache's size, megabytes: ``stream_min_bytes``)."""
    monkeypatch.setattr(streaming, "STREAM_MIN_BYTES", 4000)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WORK", 1)
    monkeypatch.setattr(parallel.config, "NUMBA_NUM_THREADS", 2)
    calls = []
    for version in ("streamed", "parallel", "serial"):  # the streamed version is made once, into ``_streamed``
        monkeypatch.setattr(pointwise.relu_forward, "_streamed" if version == "streamed" else version,
                            lambda x, out, version=version: calls.append(version))
    x = np.ones(1000, np.float32)
    pointwise.relu_forward(x, np.empty(1000, np.float32))  # 4000 bytes
    pointwise.relu_forward(x[:999], np.empty(999, np.float32))
    pointwise.relu_forward(x, x)  # in place
    pointwise.relu_forward(np.ones(2000, np.float32)[::2], np.empty(1000, np.float32))  # a strided input
    assert calls == ["streamed", "parallel", "parallel", "parallel"]


def test_one_thread_streams_a_large_output_too(monkeypatch):
    monkeypatch.setattr(streaming, "STREAM_MIN_BYTES", 4000)
    monkeypatch.setattr(parallel.config, "NUMBA_NUM_THREADS", 1)
    calls = []
    for version in ("streamed", "serial"):
        monkeypatch.setattr(pointwise.add_forward, "_streamed" if version == "streamed" else version,
                            lambda a, b, out, version=version: calls.append(version))
    a = np.ones(1000, np.float32)
    pointwise.add_forward(a, a, np.empty(1000, np.float32))
    pointwise.add_forward(a[:10], a[:10], np.empty(10, np.float32))
    assert calls == ["streamed", "serial"]


@pytest.mark.parametrize("kernel", [pointwise.add_forward, pointwise.dropout_forward], ids=lambda k: k.__name__)
def test_the_streamed_version_stores_whole_vectors_past_the_caches_and_fences_them(kernel, rng):
    """The kernel's streamed version built afresh (code loaded from Numba's cache cannot be inspected): x86's
    non-temporal vector store and the store fence after each block; elsewhere, the non-temporal hint that LLVM
    turns into the target's own. A kernel whose loop escaped the streamed names would compile to plain stores."""
    fresh = parallel.ParallelKernel(kernel._function, {"streams": True})
    kinds, reference = STREAMING_KERNELS[kernel]
    operands = _operands(kinds, 100, np.float32, 0, rng)
    out = np.empty(100, np.float32)
    with every_call("streamed"):
        fresh(*operands, out)
    np.testing.assert_allclose(out, reference(*(o.astype(np.float64) if isinstance(o, np.ndarray) else float(o)
                                                for o in operands)), rtol=1e-6)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assembly = "\n".join(fresh.streamed.inspect_asm().values())
        assert re.search(r"\bv?movntps\s", assembly), "no non-temporal vector store"
        assert "sfence" in assembly
    else:
        assert "!nontemporal" in "\n".join(fresh.streamed.inspect_llvm().values())


def test_a_streamed_map_refuses_strided_arrays():
    """Its elements are addressed from the arrays' data pointers."""
    x = np.ones(64, np.float32)
    with every_call("streamed"), pytest.raises(TypingError, match="a streamed map takes C-contiguous arrays"):
        pointwise.add_forward(x[::2], x[::2], np.empty(32, np.float32))


def test_the_streamed_part_as_python_is_the_plain_map():
    """With Numba's JIT disabled (the coverage measurement) ``stream_part`` runs as Python, element by element."""
    x = np.linspace(-2.0, 2.0, 40)
    out = np.zeros_like(x)
    for part in range(streaming.stream_parts(x.shape[0])):
        streaming.stream_part(product, out, part, x, 3.0)
    np.testing.assert_array_equal(out, x * 3.0)


def test_the_caches_are_read_from_sysfs(tmp_path):
    for index, (level, kind, size) in enumerate((("1", "Data", "48K"), ("1", "Instruction", "64K"),
                                                 ("2", "Unified", "2048K"), ("3", "Unified", "36M"))):
        entry = tmp_path / f"index{index}"
        entry.mkdir()
        (entry / "level").write_text(level + "\n")
        (entry / "type").write_text(kind + "\n")
        (entry / "size").write_text(size + "\n")
    assert streaming.cache_sizes(str(tmp_path)) == {1: 48 << 10, 2: 2 << 20, 3: 36 << 20}
    assert streaming.cache_sizes(str(tmp_path / "absent")) == {}


def test_the_vendor_is_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    assert streaming.cpu_vendor(str(cpuinfo)) == "AuthenticAMD"
    assert streaming.cpu_vendor(str(tmp_path / "absent")) == ""


def test_outputs_stream_from_the_last_level_or_on_intel_the_second_levels():
    sizes = {1: 48 << 10, 2: 2 << 20, 3: 480 << 20}
    assert streaming.stream_min_bytes(sizes, "AuthenticAMD", 2) == 480 << 20
    assert streaming.stream_min_bytes(sizes, "GenuineIntel", 2) == 4 << 20
    assert streaming.stream_min_bytes(sizes, "GenuineIntel", 1) == 2 << 20
    assert streaming.stream_min_bytes({1: 32 << 10}, "GenuineIntel", 2) == 32 << 10
    assert streaming.stream_min_bytes({}, "GenuineIntel", 2) == streaming.DEFAULT_LAST_LEVEL_CACHE
