"""Numba's cache of compiled kernels, kept fresh when a module a kernel depends on changes.

Numba keys a function's cached code to the source of the one file that defines it. A kernel's compiled code also
holds what it took from other modules: the scalar bodies it inlines (``kernels/scalar.py``), the maps and loops it is
built from (``cpu/streaming.py``, ``cpu/parallel.py``), the constants it reads (``cpu/tuning.py``). Changed there
with the kernel's own file unchanged, as a ``git pull`` into an editable install can do, Numba loaded the old code:
the element-wise kernels ran their earlier, 6x slower loop after ``streaming.py`` alone had changed, and a changed
scalar body would have given silently different results.

:class:`DependentSourceLocator` puts the kernel's numconv dependencies into the stamp that Numba compares: the
content of every numconv module its file imports at the top level (an import statement at the start of a line), and
theirs in turn (a function's own imports run Python code, not compiled code). Where the stamp differs, Numba compiles
afresh and overwrites the entry. It serves the files of the numconv package only; other code, and everything where
the user names the locators (``NUMBA_CACHE_LOCATOR_CLASSES``), keeps Numba's own. The cache directory is the one
Numba's own locator would use. numba-cuda caches through a copy of Numba's machinery with its own list of locators:
the CUDA backend installs the locator there too (``kernels/cuda/__init__.py``).
"""
from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache

from numba.core import caching

__all__ = ["DependentSourceLocator", "dependencies", "dependencies_stamp", "install"]

#: the directory that holds the numconv package
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: the package whose modules are followed
PACKAGE = "numconv"


def _module_file(root: str, name: str) -> str | None:
    """The file of module ``name`` under ``root`` (a package's ``__init__.py``), or None."""
    base = os.path.join(root, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


#: a top-level import statement (at the start of a line): ``from module import names`` (the names in parentheses over
#: several lines, or to the line's end) or ``import modules``
_IMPORT = re.compile(r"^(?:from[ \t]+([\w.]+)[ \t]+import[ \t]*(\([^)]*\)|[^\n]*)|import[ \t]+([^\n]*))", re.MULTILINE)


def _names(text: str) -> list:
    """The dotted names of an import's list: ``a as b, c`` -> [a, c] (comments, parentheses, continuations dropped)."""
    text = re.sub(r"#[^\n]*", "", text).replace("(", " ").replace(")", " ").replace("\\", " ")
    return [part.split()[0] for part in text.split(",") if part.split()]


@lru_cache(maxsize=None)
def _imports(path: str, root: str, package: str, stamp: tuple) -> frozenset:
    """The files of ``package``'s modules that ``path`` imports at its top level (``stamp``: its mtime and size, so
    that a changed file is read again). ``from P import name`` counts ``P.name`` where that is a module of its own,
    else ``P`` (so that importing a submodule does not pull in its package's ``__init__``). Read with a pattern, not
    parsed: the generated kernel files are megabytes, and parsing them took half a second of every import."""
    with open(path, encoding="utf-8") as source:
        text = source.read()
    names = set()
    for match in _IMPORT.finditer(text):
        module, imported, modules = match.groups()
        if modules is not None:
            names.update(name for name in _names(modules) if name.split(".")[0] == package)
        elif module.split(".")[0] == package:
            for name in _names(imported):
                submodule = f"{module}.{name}"
                names.add(submodule if _module_file(root, submodule) else module)
    return frozenset(filter(None, (_module_file(root, name) for name in names)))


def _stat(path: str) -> tuple:
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size


def dependencies(path: str, root: str = PACKAGE_ROOT, package: str = PACKAGE) -> list:
    """Every file of ``package`` (under ``root``) that ``path`` depends on through top-level imports, directly or
    through others, ``path`` itself left out; sorted."""
    seen, pending = set(), [os.path.abspath(path)]
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(_imports(current, root, package, _stat(current)))
    seen.discard(os.path.abspath(path))
    return sorted(seen)


@lru_cache(maxsize=None)
def _content_hash(path: str, stamp: tuple) -> bytes:
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).digest()


def dependencies_stamp(path: str, root: str = PACKAGE_ROOT, package: str = PACKAGE) -> str:
    """A digest of the names and contents of ``path``'s dependencies (:func:`dependencies`)."""
    digest = hashlib.sha256()
    for dependency in dependencies(path, root, package):
        digest.update(os.path.relpath(dependency, root).encode())
        digest.update(_content_hash(dependency, _stat(dependency)))
    return digest.hexdigest()


class DependentSourceLocator(caching._CacheLocator):
    """Numba's own locator for a function of the numconv package (the first of ``inner_classes`` that takes it), its
    source stamp joined by the stamp of the modules the function's file depends on (module docstring)."""

    #: the locators this one wraps: a caching implementation's own list, into which :func:`install` put it
    inner_classes: list = []

    def __init__(self, inner, py_file: str):
        self._inner, self._py_file = inner, py_file

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return self._inner.get_source_stamp(), dependencies_stamp(self._py_file)

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        path = os.path.abspath(py_file)
        if not path.startswith(os.path.join(PACKAGE_ROOT, PACKAGE) + os.sep):
            return None
        for locator_class in cls.inner_classes:
            if not issubclass(locator_class, DependentSourceLocator):
                inner = locator_class.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner, path)
        return None


def install(caching_module=caching) -> None:
    """Put a :class:`DependentSourceLocator` first among the locators that ``caching_module``'s ``CacheImpl`` tries
    (Numba's, by default; numba-cuda has a module of its own), once, before numconv's first kernel there is defined:
    a function's locator is chosen when it is decorated."""
    locators = caching_module.CacheImpl._locator_classes
    if not any(isinstance(kind, type) and issubclass(kind, DependentSourceLocator) for kind in locators):
        locators.insert(0, type("DependentSourceLocator", (DependentSourceLocator,), {"inner_classes": locators}))
