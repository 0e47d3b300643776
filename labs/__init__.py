"""The Postgres Production Lab's package: what every challenge notebook imports.

A notebook opens with::

    import labs
    from labs import check, check_all, TODO
    lab = labs.setup("topic")      # a fresh database for this challenge

and ends with ``check_all("topic")``.

The package is built in layers; each imports only from the layers below it
(``tests/test_layers.py`` keeps it so):

=============  ==============================================================
``runtime``    where PostgreSQL comes from: configuration, the server, errors
``data``       the shop dataset: generator, templates, loading, vendor feeds
``tools``      what a notebook works with: sessions, stress, workload, plans,
               the migration probe, Alembic
``course``     the course machinery: challenge setup, checking, learner
               copies, grading
``checks``     one module of checks per challenge
=============  ==============================================================

The tool and data modules are also reachable by their short names, which is
how notebooks use them (``from labs import explain as ex``,
``from labs.sessions import Sessions``, ``labs.stress.retry``): those names
are the same module objects as ``labs.tools.explain`` and so on, so a
notebook written before the package was grouped still runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

from .course.catalogue import course_map
from .course.challenge import Lab, setup
from .course.checking import (TODO, CheckFailed, NotAttempted, check, check_all, compare_results,
                              hint, require, solution)
from .course.progress import show as progress
from .runtime.config import current_scale
from .runtime.errors import LabError

__all__ = [
    "Lab", "setup", "TODO", "CheckFailed", "NotAttempted", "check", "check_all", "hint", "solution",
    "compare_results", "require", "current_scale", "LabError", "course_map", "progress",
]

# short name -> the layer that holds it
_SHORT_NAMES = {
    "config": "runtime", "errors": "runtime", "server": "runtime",
    "fake": "data", "dataset": "data", "loading": "data", "feeds": "data",
    "sessions": "tools", "stress": "tools", "workload": "tools", "explain": "tools",
    "migrations_probe": "tools", "migrations_alembic": "tools", "blobstore": "tools",
    "statements": "tools", "ddl_watch": "tools", "legacy_schema": "data",
    "tenancy": "tools", "table_health": "tools", "partitions": "tools", "relay": "tools",
    "satellites": "runtime", "routing": "tools",
    "challenge": "course", "checking": "course", "learner": "course", "grading": "course",
}


class _ShortNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import labs.sessions`` give the module ``labs.tools.sessions`` itself."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        package, _, name = fullname.partition(".")
        if package != __name__ or name not in _SHORT_NAMES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        name = spec.name.partition(".")[2]
        return importlib.import_module(f"{__name__}.{_SHORT_NAMES[name]}.{name}")

    def exec_module(self, module: ModuleType) -> None:
        pass  # the real module has already run


if not any(isinstance(finder, _ShortNames) for finder in sys.meta_path):
    sys.meta_path.insert(0, _ShortNames())  # before any path finder: the short names are not files


def __getattr__(name: str) -> ModuleType:
    # ``import labs`` then ``labs.stress.retry``: load the short name on first use
    if name in _SHORT_NAMES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
