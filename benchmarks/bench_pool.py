"""Max-pooling with indices on the anchor suite: time and GB/s (input read, output and int64 indices written)."""
from benchmarks import _setup  # first: it puts numconv and anchors on the path

import anchors

NAMES = [case.name for case in anchors.POOL_CASES]


class MaxPool:
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
