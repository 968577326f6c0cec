"""The memory-bound cases of the anchor suite: pooling (max with indices, max without, average; the backward of
max-pooling from its indices and of average pooling), local response normalisation (forward and forward+backward)
and element-wise ops (relu forward and forward+backward, add): time and GB/s (bytes read + written, as ``anchors``
counts them); and the same forward passes in ONNX Runtime, when it is installed."""
from benchmarks import _setup  # first: it puts numconv and anchors on the path

import anchors

NAMES = [case.name for case in anchors.POOL_CASES]
VARIANT_NAMES = [case.name for case in anchors.POOL_VARIANT_CASES]
LRN_NAMES = [case.name for case in anchors.LRN_CASES]
ELEMENTWISE_NAMES = [case.name for case in anchors.ELEMENTWISE_CASES]
MODES = ["forward", "forward_backward"]


class MaxPool:
    """Max-pooling with indices."""
    params = [NAMES]
    param_names = ["layer"]

    def setup_cache(self):
        for case in anchors.POOL_CASES:
            anchors.numconv_pool(case)()

    setup_cache.timeout = 900

    def setup(self, name):
        self.case = anchors.POOL_BY_NAME[name]
        self.pool = anchors.numconv_pool(self.case)
        _setup.warm_up(self.pool)

    def time_max_pool(self, name):
        self.pool()

    def track_gbs(self, name):
        return self.case.bytes / _setup.best_of(self.pool) / 1e9

    track_gbs.unit = "GB/s"


class Pool:
    """The same layers max-pooled without indices ("_noidx") and average-pooled ("avgpool_")."""
    params = [VARIANT_NAMES]
    param_names = ["layer"]

    def setup_cache(self):
        for case in anchors.POOL_VARIANT_CASES:
            anchors.numconv_pool(case)()

    setup_cache.timeout = 900

    def setup(self, name):
        self.case = anchors.POOL_BY_NAME[name]
        self.pool = anchors.numconv_pool(self.case)
        _setup.warm_up(self.pool)

    def time_pool(self, name):
        self.pool()

    def track_gbs(self, name):
        return self.case.bytes / _setup.best_of(self.pool) / 1e9

    track_gbs.unit = "GB/s"


class PoolBackward:
    """The backward alone: max-pooling's from the forward's indices, average pooling's."""
    params = [[case.name for case in anchors.POOL_BACKWARD_CASES]]
    param_names = ["layer"]

    def setup_cache(self):
        for case in anchors.POOL_BACKWARD_CASES:
            anchors.numconv_pool_backward(case)()

    setup_cache.timeout = 900

    def setup(self, name):
        self.case = anchors.POOL_BY_NAME[name]
        self.backward = anchors.numconv_pool_backward(self.case)
        _setup.warm_up(self.backward)

    def time_pool_backward(self, name):
        self.backward()

    def track_gbs(self, name):
        return self.case.backward_bytes / _setup.best_of(self.backward) / 1e9

    track_gbs.unit = "GB/s"


class LocalResponseNorm:
    """AlexNet's normalisation layers at batch 32 (size 5, alpha 1e-4, beta 0.75, k 2)."""
    params = [LRN_NAMES, MODES]
    param_names = ["layer", "mode"]
    timeout = 600

    def setup_cache(self):
        for case in anchors.LRN_CASES:
            anchors.numconv_lrn(case, backward=True)()

    setup_cache.timeout = 900

    def setup(self, name, mode):
        self.case = anchors.LRN_BY_NAME[name]
        self.backward = mode == "forward_backward"
        self.function = anchors.numconv_lrn(self.case, self.backward)
        _setup.warm_up(self.function)

    def time_lrn(self, name, mode):
        self.function()

    def track_gbs(self, name, mode):
        return self.case.bytes(self.backward) / _setup.best_of(self.function) / 1e9

    track_gbs.unit = "GB/s"


class Elementwise:
    """relu (forward, forward+backward) and add (forward; its backward does no work) on (32, 96, 55, 55)."""
    params = [ELEMENTWISE_NAMES, MODES]
    param_names = ["op", "mode"]

    def setup_cache(self):
        for case in anchors.ELEMENTWISE_CASES:
            anchors.numconv_elementwise(case, backward=case.backward)()

    setup_cache.timeout = 900

    def setup(self, name, mode):
        self.case = anchors.ELEMENTWISE_BY_NAME[name]
        self.backward = mode == "forward_backward"
        if self.backward and not self.case.backward:
            raise NotImplementedError(f"{name} has no backward work to time")
        self.function = anchors.numconv_elementwise(self.case, self.backward)
        _setup.warm_up(self.function)

    def time_op(self, name, mode):
        self.function()

    def track_gbs(self, name, mode):
        return self.case.bytes(self.backward) / _setup.best_of(self.function) / 1e9

    track_gbs.unit = "GB/s"


class _Ort:
    """ONNX Runtime's forward pass of a one-node model: ``factory`` builds it for the case ``cases[name]``."""
    param_names = ["layer"]

    def setup(self, name):
        _setup.require_ort()
        self.function = type(self).factory(type(self).cases[name])
        _setup.warm_up(self.function)


class OrtPool(_Ort):
    """ONNX Runtime's MaxPool (with and without its Indices output) and AveragePool on the same layers."""
    params = [NAMES + VARIANT_NAMES]
    factory, cases = anchors.ort_pool, anchors.POOL_BY_NAME

    def time_pool(self, name):
        self.function()


class OrtLocalResponseNorm(_Ort):
    """ONNX Runtime's LRN (forward only)."""
    params = [LRN_NAMES]
    factory, cases = anchors.ort_lrn, anchors.LRN_BY_NAME

    def time_lrn(self, name):
        self.function()


class OrtElementwise(_Ort):
    """ONNX Runtime's Relu and Add (forward only)."""
    params = [ELEMENTWISE_NAMES]
    param_names = ["op"]
    factory, cases = anchors.ort_elementwise, anchors.ELEMENTWISE_BY_NAME

    def time_op(self, name):
        self.function()
