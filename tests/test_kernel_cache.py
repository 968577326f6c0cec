"""Numba's cache of numconv's kernels follows the modules each kernel depends on, not only its own file."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from numconv.kernels import cache
from numconv.kernels.cpu import conv, pointwise

ROOT = Path(__file__).resolve().parents[1]


def _package(root: Path, modules: dict) -> None:
    (root / "pkg").mkdir()
    for name, text in modules.items():
        (root / "pkg" / f"{name}.py").write_text(text)


def test_a_file_depends_on_the_modules_it_imports_at_the_top_and_on_theirs(tmp_path):
    _package(tmp_path, {
        "__init__": "from pkg import a, b, c, d\n",
        "a": "import os\nfrom pkg.b import VALUE\n\ndef late():\n    from pkg import c\n",
        "b": "from pkg import d\nVALUE = 1\n",
        "c": "",
        "d": "from pkg import CONSTANT\n",
    })

    def names(module: str) -> list:
        return [os.path.relpath(path, tmp_path)
                for path in cache.dependencies(tmp_path / "pkg" / module, str(tmp_path), "pkg")]

    # b for a name it defines, d through b as a module of its own, and the package's __init__ for d's CONSTANT (no
    # module), with all it imports: c comes in there alone (late's import of it runs no compiled code)
    assert names("a.py") == sorted(os.path.join("pkg", name) for name in ("__init__.py", "b.py", "c.py", "d.py"))
    assert names("c.py") == []
    late_only = tmp_path / "pkg" / "e.py"
    late_only.write_text("def late():\n    from pkg import c\n")
    assert names("e.py") == []


def test_the_stamp_changes_with_a_dependency_and_not_with_another_file(tmp_path):
    _package(tmp_path, {"__init__": "", "a": "from pkg.b import VALUE\n", "b": "VALUE = 1\n", "c": "OTHER = 1\n"})
    a = tmp_path / "pkg" / "a.py"
    before = cache.dependencies_stamp(str(a), str(tmp_path), "pkg")
    (tmp_path / "pkg" / "c.py").write_text("OTHER = 2\n")
    assert cache.dependencies_stamp(str(a), str(tmp_path), "pkg") == before
    (tmp_path / "pkg" / "b.py").write_text("VALUE = 2\n")
    assert cache.dependencies_stamp(str(a), str(tmp_path), "pkg") != before


def test_numconv_kernels_are_cached_through_the_dependent_locator():
    for kernel in (pointwise.relu_forward.parallel, pointwise.relu_forward.serial):
        assert isinstance(kernel._cache._impl.locator, cache.DependentSourceLocator)
    relative = {os.path.relpath(path, cache.PACKAGE_ROOT) for path in cache.dependencies(pointwise.__file__)}
    assert {"numconv/kernels/scalar.py", "numconv/kernels/cpu/streaming.py", "numconv/kernels/cpu/parallel.py"} \
        <= relative
    assert "numconv/kernels/cpu/tuning.py" in {os.path.relpath(path, cache.PACKAGE_ROOT)
                                              for path in cache.dependencies(conv.__file__)}


_RELU = """
import sys
import numpy as np
from numconv.kernels.cpu import pointwise
x = np.array([-1.0, 2.0])
out = np.empty_like(x)
pointwise.relu_forward(x, out)
print(out[0], sum(pointwise.relu_forward.serial.stats.cache_hits.values()))
"""


def test_a_kernel_whose_scalar_body_changed_is_compiled_afresh(tmp_path):
    """A copy of numconv, run three times on one cache: ReLU compiled; loaded; then, with ``scalar.relu`` changed
    and ``pointwise.py`` not, compiled afresh (Numba alone would load the first run's code)."""
    shutil.copytree(ROOT / "numconv", tmp_path / "numconv", ignore=shutil.ignore_patterns("__pycache__"))
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))

    def run() -> list:
        result = subprocess.run([sys.executable, "-c", _RELU], env=environment, capture_output=True, text=True,
                                timeout=300, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert run() == ["0.0", "0"]
    assert run() == ["0.0", "1"]
    scalar = tmp_path / "numconv" / "kernels" / "scalar.py"
    text = scalar.read_text()
    assert "return x if not x <= 0.0 else 0.0" in text
    scalar.write_text(text.replace("return x if not x <= 0.0 else 0.0", "return x if not x <= 0.0 else -0.5"))
    assert run() == ["-0.5", "0"]


def test_the_cuda_backend_caches_through_it_too():
    """numba-cuda keeps a list of locators of its own; the CUDA kernels' package puts one there before its kernels."""
    from numba.cuda.core import caching

    import numconv.kernels.cuda  # noqa: F401

    first = caching.CacheImpl._locator_classes[0]
    assert issubclass(first, cache.DependentSourceLocator)
    assert first.inner_classes is caching.CacheImpl._locator_classes
