"""The joins of networks that are not chains: add (ResNet's residual connection) and cat along channels (SqueezeNet's
and Inception's), forward and backward, on both backends, and their errors."""
import numpy as np
import pytest

import numconv.functional as F


def test_add_and_its_gradient(rng):
    a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(F.add(a, b), a + b)
    g = rng.standard_normal(a.shape)
    grad_a, grad_b = F.add_backward(g)
    np.testing.assert_array_equal(grad_a, g)
    np.testing.assert_array_equal(grad_b, g)


@pytest.mark.parametrize("channels", [(1,), (2, 3), (3, 1, 4)])
def test_cat_puts_the_parts_one_after_another_and_splits_the_gradient_back(channels, rng):
    parts = [rng.standard_normal((2, c, 3, 2)).astype(np.float32) for c in channels]
    out = F.cat(parts, dim=1)
    np.testing.assert_array_equal(out, np.concatenate(parts, axis=1))
    g = rng.standard_normal(out.shape).astype(np.float32)
    grads = F.cat_backward(g, parts)
    np.testing.assert_array_equal(np.concatenate(grads, axis=1), g)
    assert [grad.shape for grad in grads] == [part.shape for part in parts]


@pytest.mark.parametrize("call, error, message", [
    (lambda x: F.add(x, x[:, :2]), ValueError, "other"),
    (lambda x: F.add(x, x.astype(np.float32)), TypeError, "dtype"),
    (lambda x: F.cat([x, x], dim=2), ValueError, "channel axis only"),
    (lambda x: F.cat([x, x[:, :, :2]]), ValueError, r"tensors\[1\] has shape"),
    (lambda x: F.cat([]), ValueError, "at least one"),
    (lambda x: F.cat(x), TypeError, "list or tuple"),
    (lambda x: F.cat([x], dim="1"), TypeError, "dim"),
])
def test_bad_joins_get_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(np.zeros((2, 3, 4)))


def test_the_cuda_backend_joins_as_the_cpu_does(rng):
    pytest.importorskip("numba.cuda")
    from numconv import backend
    from spec import registry

    if "cuda" not in registry.available_backends():
        pytest.skip("numba-cuda finds neither a GPU nor its simulator")
    a, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 1, 5))
    on_device = F.cat([backend.to_device(a), backend.to_device(b)])
    np.testing.assert_array_equal(backend.to_host(on_device), np.concatenate([a, b], axis=1))
    grads = F.cat_backward(on_device, [backend.to_device(a), backend.to_device(b)])
    np.testing.assert_array_equal(backend.to_host(grads[0]), a)
    np.testing.assert_array_equal(backend.to_host(grads[1]), b)
    np.testing.assert_array_equal(backend.to_host(F.add(backend.to_device(a), backend.to_device(a))), 2 * a)
