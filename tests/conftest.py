"""Test configuration: one database per worker, one clear abort when the server is missing.

Like psycopg's own suite, the tests need a real server: the controller makes sure
one is running (starting the lab's local server if needed) before any worker
starts, prints its version in the report header, and stops the whole run with a
single message when it cannot.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LAB_SCALE", "tiny")
os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")

_server_line = ""


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    global _server_line
    if _is_worker(config):
        # Kernels started by this worker inherit the namespace: two workers never
        # clone into the same challenge database. A namespace already set (two test
        # runs side by side on one server) is kept as a prefix.
        os.environ["LAB_DB_NAMESPACE"] = (os.environ.get("LAB_DB_NAMESPACE", "")
                                          + config.workerinput["workerid"] + "_")
        return
    from labs.runtime.config import current_scale
    from labs.data.dataset import ensure_template
    from labs.runtime.errors import LabError
    from labs.runtime.server import describe_url, ensure_server

    try:
        srv = ensure_server(verbose=False)
        ensure_template(srv, current_scale(), build_if_missing=True)
    except LabError as exc:
        pytest.exit("The tests need PostgreSQL and could not get it:\n" + exc.render(),
                    returncode=3)
    _server_line = (f"PostgreSQL {srv.version // 10000}.{srv.version % 10000} ({srv.kind}) at "
                    f"{describe_url(srv.url)}; LAB_SCALE={current_scale().name}")


def pytest_report_header(config: pytest.Config) -> str:
    return _server_line


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebook)
