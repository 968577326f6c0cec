"""Convolutions of the anchor suite, forward and forward+backward (both gradients and the bias's): time and
GFLOP/s. Compilation happens in ``setup_cache`` (which fills Numba's on-disk cache) and ``setup`` (one untimed
call per case), never in the timed region."""
from benchmarks import _setup  # first: it puts numconv and anchors on the path

import anchors

NAMES = [case.name for case in anchors.CONV_CASES]


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
