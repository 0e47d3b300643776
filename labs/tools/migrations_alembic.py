"""The migration as Alembic revisions, in a throwaway environment, run from Python.

Teams ship schema changes as versioned migrations, and Alembic is how a
SQLAlchemy project does it. :func:`make_environment` writes a minimal Alembic
environment into a temporary directory: an ``env.py`` and three revisions,
``0001_expand`` → ``0002_backfill`` → ``0003_contract``, each with an
``upgrade()`` and a ``downgrade()``. The revisions do not hard-code SQL: they
call the learner's :class:`Plan` (statements and functions from the notebook),
registered here before :func:`upgrade` or :func:`downgrade` runs Alembic's
Python API (``alembic.command.upgrade(cfg, "head")``) in the same process.

Two things about PostgreSQL shape the revisions:

* Alembic runs each migration in a transaction (``transactional_ddl``). A
  backfill that commits per batch, ``CREATE INDEX CONCURRENTLY`` (PostgreSQL:
  "CREATE INDEX CONCURRENTLY cannot run inside a transaction block") and
  retries after a lock timeout all need to be outside it, hence
  ``with op.get_context().autocommit_block():``.
* Inside that block the revision hands the learner's functions the underlying
  psycopg connection (``op.get_bind().connection.driver_connection``), the
  same kind of connection they were written and checked against.
"""

from __future__ import annotations

import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

_PLAN: "Plan | None" = None


@dataclass
class Plan:
    """The learner's migration: how to run DDL, the steps, the backfill, the way back."""

    run_ddl: Callable[..., Any]
    expand_steps: list[str]
    backfill: Callable[..., Any]
    contract_steps: list[str]
    downgrade_steps: dict[str, list[str]]
    backfill_kwargs: dict[str, Any] = field(default_factory=dict)

    def run_all(self, conn: Any, statements: list[str]) -> None:
        for statement in statements:
            self.run_ddl(conn, statement)


def current_plan() -> Plan:
    if _PLAN is None:
        raise RuntimeError("no migration plan registered: call labs.tools.migrations_alembic.upgrade()")
    return _PLAN


def driver_connection(op: Any) -> Any:
    """The psycopg connection under Alembic's SQLAlchemy connection."""
    return op.get_bind().connection.driver_connection


ENV_PY = '''\
"""Alembic environment of the migrations challenge (generated; online mode only)."""
from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
with engine.connect() as connection:
    # one transaction per revision: a failure leaves the earlier revisions applied
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
'''

REVISIONS = {
    "0001_expand": ("0001", None, "add users.created_at, nullable, DEFAULT now() for new rows",
                    "plan.run_all(conn, plan.expand_steps)",
                    "plan.run_all(conn, plan.downgrade_steps['expand'])"),
    "0002_backfill": ("0002", "0001", "backfill users.created_at from signup_events",
                      "plan.backfill(conn, **plan.backfill_kwargs)",
                      "pass  # the data goes away with the column in 0001's downgrade"),
    "0003_contract": ("0003", "0002", "users.created_at NOT NULL, index built concurrently",
                      "plan.run_all(conn, plan.contract_steps)",
                      "plan.run_all(conn, plan.downgrade_steps['contract'])"),
}


def _revision_source(rev: str, down: str | None, message: str, up: str, down_body: str) -> str:
    return textwrap.dedent(f'''\
        """{message}

        Revision ID: {rev}
        Revises: {down or ''}
        """
        from alembic import op

        from labs.tools.migrations_alembic import current_plan, driver_connection

        revision = "{rev}"
        down_revision = {down!r}
        branch_labels = None
        depends_on = None


        def upgrade() -> None:
            plan = current_plan()
            # outside Alembic's transaction: per-batch commits, CONCURRENTLY, lock retries
            with op.get_context().autocommit_block():
                conn = driver_connection(op)
                {up}


        def downgrade() -> None:
            plan = current_plan()
            with op.get_context().autocommit_block():
                conn = driver_connection(op)
                {down_body}
        ''')


def make_environment(url: str, directory: str | Path | None = None) -> Any:
    """Write env.py and the three revisions; return an alembic Config pointing at them."""
    from alembic.config import Config

    root = Path(directory or tempfile.mkdtemp(prefix="lab_alembic_"))
    (root / "versions").mkdir(parents=True, exist_ok=True)
    (root / "env.py").write_text(ENV_PY)
    for name, (rev, down, message, up, down_body) in REVISIONS.items():
        (root / "versions" / f"{name}.py").write_text(
            _revision_source(rev, down, message, up, down_body))
    cfg = Config()
    cfg.set_main_option("script_location", str(root))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _run(lab: Any, plan: Plan, action: str, revision: str, cfg: Any = None) -> Any:
    from alembic import command

    global _PLAN
    cfg = cfg or make_environment(lab.sqlalchemy_url)
    _PLAN = plan
    try:
        getattr(command, action)(cfg, revision)
    finally:
        _PLAN = None
    return cfg


def upgrade(lab: Any, plan: Plan, revision: str = "head", cfg: Any = None) -> Any:
    """``alembic upgrade <revision>`` with this plan, against the lab's database."""
    return _run(lab, plan, "upgrade", revision, cfg)


def downgrade(lab: Any, plan: Plan, revision: str = "base", cfg: Any = None) -> Any:
    """``alembic downgrade <revision>`` with this plan, against the lab's database."""
    return _run(lab, plan, "downgrade", revision, cfg)


def current(lab: Any) -> str | None:
    """The revision the database is at (alembic_version), or None."""
    import psycopg

    with psycopg.connect(lab.url, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()[0]:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
