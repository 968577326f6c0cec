"""Convolutions and dense layers of the anchor suite, forward and forward+backward (every gradient, the bias's
too): time and GFLOP/s; and the same forward passes in ONNX Runtime (one-node ONNX models), when it is installed.
Compilation happens in ``setup_cache`` (which fills Numba's on-disk cache) and ``setup`` (one untimed call per
case), never in the timed region."""
from benchmarks import _setup  # first: it puts numconv and anchors on the path

import anchors

NAMES = [case.name for case in anchors.CONV_CASES]
DENSE_NAMES = [case.name for case in anchors.DENSE_CASES]


class Convolution:
    params = [NAMES]
    param_names = ["layer"]
    timeout = 600

    def setup_cache(self):
        for case in anchors.CONV_CASES:
            anchors.numconv_conv(case, backward=True)()

    setup_cache.timeout = 900

    def setup(self, name):
        case = anchors.CONV_BY_NAME[name]
        self.case = case
        self.forward = anchors.numconv_conv(case)
        self.forward_backward = anchors.numconv_conv(case, backward=True)
        _setup.warm_up(self.forward, self.forward_backward)

    def time_forward(self, name):
        self.forward()

    def time_forward_backward(self, name):
        self.forward_backward()

    def track_gflops_forward(self, name):
        return self.case.flops / _setup.best_of(self.forward) / 1e9

    track_gflops_forward.unit = "GFLOP/s"

    def track_gflops_forward_backward(self, name):
        return 3 * self.case.flops / _setup.best_of(self.forward_backward) / 1e9

    track_gflops_forward_backward.unit = "GFLOP/s"


class Dense(Convolution):
    """AlexNet's fc6 and fc7 at batch 32, LeNet-5's first dense layer at batch 64, with bias."""
    params = [DENSE_NAMES]

    def setup_cache(self):
        for case in anchors.DENSE_CASES:
            anchors.numconv_dense(case, backward=True)()

    setup_cache.timeout = 900

    def setup(self, name):
        case = anchors.DENSE_BY_NAME[name]
        self.case = case
        self.forward = anchors.numconv_dense(case)
        self.forward_backward = anchors.numconv_dense(case, backward=True)
        _setup.warm_up(self.forward, self.forward_backward)


class OrtConvolution:
    """ONNX Runtime's forward pass of each convolution: one Conv node, weights as initializers, as many intra-op
    threads as numconv's, not spinning. Skipped without onnx and onnxruntime."""
    params = [NAMES]
    param_names = ["layer"]
    timeout = 600

    def setup(self, name):
        _setup.require_ort()
        self.forward = anchors.ort_conv(anchors.CONV_BY_NAME[name])
        _setup.warm_up(self.forward)

    def time_forward(self, name):
        self.forward()


class OrtDense(OrtConvolution):
    """ONNX Runtime's Gemm for each dense layer."""
    params = [DENSE_NAMES]

    def setup(self, name):
        _setup.require_ort()
        self.forward = anchors.ort_dense(anchors.DENSE_BY_NAME[name])
        _setup.warm_up(self.forward)
