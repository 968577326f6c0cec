"""Whole models: a LeNet-5 training step at batch 64, an AlexNet forward pass at batch 16 (also in ONNX Runtime,
when it is installed), NiN's inference at batch 1 through ONNX sessions (numconv's and ONNX Runtime's), and the time
from a new process to the first LeNet-5 training step with a warm and with an empty compile cache."""
import os
import subprocess
import sys
import tempfile

from benchmarks import _setup  # first: it puts numconv and anchors on the path

import anchors


class LeNet5:
    timeout = 600

    def setup_cache(self):
        anchors.numconv_lenet_step()()

    setup_cache.timeout = 900

    def setup(self):
        self.step = anchors.numconv_lenet_step()
        _setup.warm_up(self.step)

    def time_train_step_batch64(self):
        self.step()


class AlexNet:
    timeout = 600

    def setup_cache(self):
        anchors.numconv_alexnet_forward()()

    setup_cache.timeout = 900

    def setup(self):
        self.forward = anchors.numconv_alexnet_forward()
        _setup.warm_up(self.forward)

    def time_forward_batch16(self):
        self.forward()


_CHILD = ("import time; t0 = time.perf_counter(); import anchors; anchors.numconv_lenet_step()(); "
          "print(time.perf_counter() - t0)")


def _first_step_seconds(cache_dir: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir,
               PYTHONPATH=os.pathsep.join([str(_setup.HERE.parent), str(_setup.HERE)]))
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


class Start:
    """Seconds from importing numconv to the first LeNet-5 training step in a new process: ``warm`` with the
    compile cache filled by a previous process, ``cold`` with an empty one (everything compiles)."""

    timeout = 900
    number = 1
    repeat = 1

    def track_warm_start(self):
        with tempfile.TemporaryDirectory() as cache:
            _first_step_seconds(cache)
            return _first_step_seconds(cache)

    track_warm_start.unit = "s"

    def track_cold_start(self):
        with tempfile.TemporaryDirectory() as cache:
            return _first_step_seconds(cache)

    track_cold_start.unit = "s"


class OrtAlexNet:
    """ONNX Runtime on numconv's AlexNet exported with ``numconv.onnx.to_model`` (same seed, same weights and images
    as ``AlexNet``): forward at batch 16. Skipped without onnx and onnxruntime."""

    timeout = 600

    def setup(self):
        _setup.require_ort()
        self.forward = anchors.ort_alexnet_forward()
        _setup.warm_up(self.forward)

    def time_forward_batch16(self):
        self.forward()


class NiNSession:
    """NiN exported with ``numconv.onnx.to_model``, at batch 1, through numconv's ONNX session and ONNX Runtime's
    (``benchmarks/onnx_import.py`` compares them in one process). Skipped without onnx and onnxruntime."""

    timeout = 600
    params = ["numconv", "onnxruntime"]
    param_names = ["engine"]

    def setup(self, engine):
        _setup.require_ort()
        self.forward = anchors.numconv_nin_session() if engine == "numconv" else anchors.ort_nin_session()
        _setup.warm_up(self.forward)

    def time_forward_batch1(self, engine):
        self.forward()
