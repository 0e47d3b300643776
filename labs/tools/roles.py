"""Roles a challenge or its checks make beside the lab's own, one set per challenge database.

Roles are cluster-wide and outlive ``DROP DATABASE``, so each is named after the database
it serves (:func:`scoped_name`): notebooks of parallel runs (another ``LAB_DB_NAMESPACE``)
never share one, and Run All can make them again (:func:`fresh` drops a leftover first).

Under grading the notebook runs as a role that may not create roles (``CREATEROLE`` on
PostgreSQL 15 would let it grant itself ``pg_execute_server_program``). The grader makes
the roles a check module lists in ``GRADER_MAKES_ROLES`` (built with :func:`grader_makes`)
before the notebook runs, with passwords derived from the learner's secret
(``LAB_ROLE_SECRET``, see :func:`password`), and grants them to the learner's role. The
functions here then adopt those roles and reset only what they own or were granted in
this database; the grader drops them afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Callable
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from ..runtime.errors import LabError

MAX_NAME = 63  # PostgreSQL cuts longer identifiers


def scoped_name(dbname: str, suffix: str) -> str:
    """``{dbname}{suffix}``, shortened with a digest of the database name when longer than
    PostgreSQL keeps (a graded learner's database name is long), so that two suffixes of
    one database, or two long databases, never end up with the same name."""
    if len(dbname) + len(suffix) > MAX_NAME:
        digest = hashlib.sha256(dbname.encode()).hexdigest()[:8]
        dbname = f"{dbname[:MAX_NAME - len(suffix) - 9]}_{digest}"
    return f"{dbname}{suffix}"


def password(role: str, secret: str | None = None) -> str:
    """The password of a LOGIN role the lab makes: on a local lab server it only has to be
    the same for setup and checks; the grader sets LAB_ROLE_SECRET per learner so that no
    learner can log in as another learner's roles."""
    secret = secret or os.environ.get("LAB_ROLE_SECRET")
    if secret:
        return "pw_" + hmac.new(secret.encode(), role.encode(), "sha256").hexdigest()[:24]
    return f"pw_{role}"


def may_create_roles(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles "
                             "WHERE rolname = current_user").fetchone()[0])


def url_as(url: str, role: str) -> str:
    """``url`` with ``role`` and its password, on the same host, port and database."""
    parts = urlsplit(url)
    netloc = f"{quote(role)}:{quote(password(role))}@{parts.hostname or '127.0.0.1'}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def grader_makes(*roles: tuple[str, bool]) -> Callable[[str], list[tuple[str, bool]]]:
    """``GRADER_MAKES_ROLES`` for a check module: (suffix, can log in) of each role."""
    return lambda dbname: [(scoped_name(dbname, suffix), login) for suffix, login in roles]


def _exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone() is not None


def _reset(conn: psycopg.Connection, name: str, drop: bool) -> None:
    """End the role's sessions and take back what it owns or was granted here; then drop it
    when this session may (the grader drops the roles it made)."""
    ident = sql.Identifier(name)
    conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                 "WHERE usename = %s", [name])
    conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
    if drop:
        conn.execute(sql.SQL("DROP ROLE {}").format(ident))


def fresh(lab: Any, suffix: str, login: bool = False, required: bool = True) -> str | None:
    """The role ``scoped_name(lab.dbname, suffix)``, made anew (a leftover of an earlier run
    is dropped first), or the grader's, reset. When this session may not create roles and
    nobody made it: a :class:`LabError` naming the fix, or None when not ``required``."""
    name = scoped_name(lab.dbname, suffix)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        may = may_create_roles(conn)
        if _exists(conn, name):
            _reset(conn, name, drop=may)
        if may:
            conn.execute(sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
                sql.Identifier(name), sql.SQL("LOGIN" if login else "NOLOGIN"),
                sql.Literal(password(name))))
        elif not _exists(conn, name):
            if not required:
                return None
            raise LabError(
                f"This check needs a role of its own ({name}), and the lab's database user may "
                "not create roles. Use the lab's own server, give that user CREATEROLE, or "
                "create the role yourself (CREATE ROLE … LOGIN) and GRANT it to that user.")
    return name


def drop(lab: Any, suffix: str) -> None:
    """Drop the role made by :func:`fresh` (under grading: only what it owns here)."""
    name = scoped_name(lab.dbname, suffix)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        if _exists(conn, name):
            _reset(conn, name, drop=may_create_roles(conn))
