"""One fresh database per challenge, and the ways a notebook talks to it.

``setup("race_conditions")`` makes sure a server is running and the dataset's
template exists at the chosen scale, then drops the challenge's database (with
FORCE, so a kernel left behind cannot block it) and clones it from the template.
Cloning is a file copy, so a reset costs seconds even at 10 million rows, and
Run All can be repeated as often as the learner likes. Notebooks of different
challenges use different databases and can run side by side.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..runtime import server as server_mod
from ..runtime.config import Scale, current_scale, namespace
from ..runtime.errors import PLACEHOLDER_FIX, NotAttempted, placeholder_only

# jupysql ships anonymous usage statistics; the lab's machines have no route
# to them, and a learner's notebook should not phone home anyway.
os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")


def database_name(challenge: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]+", challenge):
        raise ValueError("challenge names are lower_snake_case, e.g. 'race_conditions'")
    return f"lab_{namespace()}{challenge}"


def _written(sql: Any) -> None:
    from .checking import TODO

    # a cell that runs the learner's answer before it is written says so, in the lab's
    # words, instead of PostgreSQL's "syntax error at end of input"
    if sql is TODO or placeholder_only(sql):
        raise NotAttempted(PLACEHOLDER_FIX["demo"])


@dataclass
class Lab:
    """A challenge's own database: connections, an engine, and a reset."""

    challenge: str
    dbname: str
    url: str
    scale: Scale
    server: server_mod.Server
    dataset: dict[str, Any]
    _connections: list[psycopg.Connection] = field(default_factory=list, repr=False)
    _engine: Any = field(default=None, repr=False)
    # what a challenge made outside its database (roles are cluster-wide): undone by reset()
    _on_reset: list[Any] = field(default_factory=list, repr=False)

    @property
    def server_version(self) -> int:
        return self.server.version

    @property
    def sqlalchemy_url(self) -> str:
        return self.url.replace("postgresql://", "postgresql+psycopg://", 1)

    def connect(self, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection:
        """A new psycopg connection to this challenge's database.

        Use these (not ``%sql``) wherever transaction control matters: each is
        its own session, so several of them are several concurrent clients.
        """
        conn = psycopg.connect(self.url, autocommit=autocommit, **kwargs)
        self._connections.append(conn)
        return conn

    @property
    def engine(self):
        """A SQLAlchemy 2 engine on this challenge's database (created on first use)."""
        if self._engine is None:
            from sqlalchemy import create_engine

            self._engine = create_engine(self.sqlalchemy_url, pool_pre_ping=True)
        return self._engine

    def query(self, sql: str, params: Any = None):
        """Run one read query and return a pandas DataFrame."""
        _written(sql)
        import pandas as pd

        with psycopg.connect(self.url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            columns = [c.name for c in cur.description] if cur.description else []
            return pd.DataFrame(cur.fetchall(), columns=columns)

    def preview(self, sql: str, limit: int = 20):
        """Show what a learner's SQL returns, or say it is not written yet."""
        from .checking import TODO, _sql_is_empty

        if sql is TODO or not isinstance(sql, str) or _sql_is_empty(sql):
            print("not attempted yet: write your SQL in the cell above and run it")
            return None
        return self.query(sql).head(limit)

    def execute(self, sql: str, params: Any = None) -> int:
        """Run statements in autocommit mode; returns the last row count."""
        _written(sql)
        with psycopg.connect(self.url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def scalar(self, sql: str, params: Any = None) -> Any:
        _written(sql)
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(sql, params).fetchone()
            return row[0] if row else None

    def close(self) -> None:
        """Close every connection this Lab handed out, and the engine."""
        for conn in self._connections:
            if not conn.closed:
                conn.close()
        self._connections.clear()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def on_reset(self, undo: Any) -> None:
        """Run ``undo()`` at the next ``reset()``, before the database is cloned again: for
        what lives outside the database (a role), which a new clone would not remove."""
        if undo not in self._on_reset:
            self._on_reset.append(undo)

    def reset(self) -> "Lab":
        """Throw away every change: clone the challenge database from the template again."""
        self.close()
        undo, self._on_reset = self._on_reset, []
        for step in undo:
            step()
        _clone(self.server, self.dbname, self.dataset_template)
        return self

    @property
    def dataset_template(self) -> str:
        from ..data.dataset import template_name

        return template_name(self.scale)

    def __repr__(self) -> str:  # what a notebook shows after setup
        return (f"<Lab {self.challenge}: database {self.dbname}, scale {self.scale.name}, "
                f"PostgreSQL {self.server.version // 10000}.{self.server.version % 10000}>")


def _clone(server: server_mod.Server, dbname: str, template: str) -> None:
    with server_mod.connect_admin(server.url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        # FILE_COPY copies the template's files instead of WAL-logging every
        # page: much faster for a multi-gigabyte template (PostgreSQL 15+).
        for attempt in range(20):
            try:
                admin.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}" '
                              "STRATEGY = FILE_COPY")
                break
            except psycopg.errors.ObjectInUse:
                # another worker is cloning the same template this instant
                time.sleep(0.25 * (attempt + 1))
        else:
            admin.execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{template}" '
                          "STRATEGY = FILE_COPY")
        if admin.info.parameter_status("is_superuser") != "on":
            # a role that is not superuser (a graded learner's) keeps its databases to itself
            admin.execute(f'REVOKE ALL ON DATABASE "{dbname}" FROM PUBLIC')


def _register_sql_magic(lab: Lab) -> None:
    """Point jupysql's %sql at the challenge database, when inside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    ip.run_line_magic("load_ext", "sql")
    ip.run_line_magic("config", "SqlMagic.displaylimit = 20")
    ip.run_line_magic("config", "SqlMagic.feedback = 0")
    ip.run_line_magic("sql", f"{lab.sqlalchemy_url} --alias {lab.challenge}")


def setup(challenge: str, scale: str | None = None, *, build_if_missing: bool | None = None,
          sql_magic: bool = True) -> Lab:
    """Give a challenge a fresh database cloned from the dataset at the chosen scale.

    ``scale`` overrides ``$LAB_SCALE`` (tiny, small, production or a row
    count). The tiny dataset is built on demand; larger ones come from
    ``make data SCALE=...`` so a multi-minute build is never a surprise.
    """
    from ..data.dataset import ensure_template, template_name

    chosen = current_scale(scale)
    srv = server_mod.ensure_server(verbose=True)
    if build_if_missing is None:
        build_if_missing = chosen.name == "tiny" or bool(os.environ.get("LAB_AUTO_BUILD"))
    info = ensure_template(srv, chosen, build_if_missing=build_if_missing)
    dbname = database_name(challenge)
    _clone(srv, dbname, template_name(chosen))
    lab = Lab(challenge, dbname, srv.url_for(dbname), chosen, srv, info)
    if sql_magic:
        _register_sql_magic(lab)
    return lab


def drop(challenge: str) -> None:
    """Remove a challenge's database (used by tests and `make clean`)."""
    srv = server_mod.ensure_server()
    with server_mod.connect_admin(srv.url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database_name(challenge)}" WITH (FORCE)')
