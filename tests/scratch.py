"""Throwaway databases for library tests that need an empty database, not a challenge."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import psycopg

from labs.runtime.server import ensure_server


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create ``<prefix>_<worker>`` (dropping a leftover first), yield its URL, drop it."""
    srv = ensure_server(verbose=False)
    name = f"{os.environ.get('LAB_DB_NAMESPACE', '')}{prefix}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    with psycopg.connect(srv.url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield srv.url_for(name)
    finally:
        with psycopg.connect(srv.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
