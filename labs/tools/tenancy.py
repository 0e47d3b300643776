"""Tenants in the shop dataset, and the two roles a multi-tenant application runs as.

``prepare(lab)`` turns a challenge's copy of the shop into a SaaS database: a
``tenants`` table, a ``tenant_id`` on ``customers``, ``orders`` and ``order_items``
(one tenant, ``SKEWED_TENANT``, owns about 40% of the customers, as a big customer
does), the tables owned by a role that is not a superuser (``…_owner``, the role
migrations and jobs run as) and an application role (``…_app``: LOGIN, NOBYPASSRLS,
not the owner) with just the privileges the application needs.

Role names are the database name plus a suffix, so notebooks of parallel runs (other
``LAB_DB_NAMESPACE``) never share a role. Roles are cluster-wide and survive ``DROP
DATABASE``; ``prepare`` therefore drops and recreates them (idempotent: Run All can
be repeated), and ``drop_roles`` removes them when the notebook ends.

Under grading the notebook runs as a role that may not create roles (``CREATEROLE``
on PostgreSQL 15 would let it grant itself ``pg_execute_server_program``): the grader
makes the two roles beforehand (``grading_roles``) and grants it the owner role, and
``prepare`` then keeps them and only resets what they own in this database.
"""

from __future__ import annotations

import functools
import hashlib

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .roles import may_create_roles as _may_create_roles
from .roles import password as _password
from .roles import password as role_password  # noqa: F401  (the grader's name for it)

TENANT_TABLES = ("customers", "orders", "order_items")
SKEWED_TENANT = 1
SKEWED_SHARE = 40  # percent of the customers that belong to the skewed tenant
# tenants at each scale: enough that an ordinary tenant is a small share of every table
TENANTS_AT = {"tiny": 40, "small": 200, "production": 2000}


@dataclass(frozen=True)
class Tenancy:
    """The app role's connection details and the owner role's name, for one lab database."""

    url: str
    app_role: str
    owner_role: str
    tenants: int
    _lab: Any = None

    def connect(self, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection:
        """A connection as the application role (subject to row-level security)."""
        conn = psycopg.connect(self.url, autocommit=autocommit, **kwargs)
        if self._lab is not None and hasattr(self._lab, "_connections"):
            self._lab._connections.append(conn)  # lab.close() closes it with the rest
        return conn


def role_names(lab: Any) -> tuple[str, str]:
    """(owner role, app role), scoped to the challenge database."""
    return role_names_for(lab.dbname)


def role_names_for(dbname: str) -> tuple[str, str]:
    # PostgreSQL cuts names at 63 bytes: a long database name (a graded learner's) would
    # make both names the same, so it is shortened with a digest of the whole first
    if len(dbname) + len("_owner") > 63:
        dbname = f"{dbname[:48]}_{hashlib.sha256(dbname.encode()).hexdigest()[:8]}"
    return f"{dbname}_owner", f"{dbname}_app"


def grading_roles(dbname: str) -> list[tuple[str, bool]]:
    """The roles the grader makes before a graded notebook runs: (name, can log in)."""
    owner, app = role_names_for(dbname)
    return [(owner, False), (app, True)]


def app_url(lab: Any) -> str:
    from urllib.parse import quote, urlsplit, urlunsplit

    _, app = role_names(lab)
    parts = urlsplit(lab.url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(app)}:{quote(_password(app))}@{host}" + (f":{parts.port}" if parts.port
                                                              else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def tenant_count(lab: Any) -> int:
    name = getattr(lab.scale, "name", "tiny")
    return TENANTS_AT.get(name, max(40, lab.dataset["row_counts"]["customers"] // 500))


def drop_roles(lab: Any) -> None:
    """Drop the challenge's roles (and what they own or were granted in its database)."""
    roles = role_names(lab)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        # graded: the grader made the roles and drops them; here only what they own goes
        keep = not _may_create_roles(conn)
        for role in roles:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                ident = sql.Identifier(role)
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(ident))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
                if not keep:
                    conn.execute(sql.SQL("DROP ROLE {}").format(ident))


def exists(lab: Any) -> bool:
    """Whether ``prepare`` has run on this database (roles and tenant columns present)."""
    _, app = role_names(lab)
    with psycopg.connect(lab.url, autocommit=True) as conn:
        return bool(conn.execute(
            """SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)
                      AND to_regclass('public.tenants') IS NOT NULL""", [app]).fetchone()[0])


def tenancy(lab: Any) -> Tenancy:
    owner, app = role_names(lab)
    return Tenancy(app_url(lab), app, owner, tenant_count(lab), lab)


def prepare(lab: Any) -> Tenancy:
    """Add tenants to the shop and (re)create the owner and application roles."""
    drop_roles(lab)
    if hasattr(lab, "on_reset"):  # roles outlive a clone: lab.reset() drops them
        lab.on_reset(functools.partial(drop_roles, lab))
    owner, app = role_names(lab)
    n = tenant_count(lab)
    ids = {"owner": sql.Identifier(owner), "app": sql.Identifier(app),
           "db": sql.Identifier(lab.dbname)}
    with psycopg.connect(lab.url, autocommit=True) as conn:
        def run(statement: str, params: Any = None) -> None:
            conn.execute(sql.SQL(statement).format(**ids), params)

        if _may_create_roles(conn):
            run("CREATE ROLE {owner} NOLOGIN NOSUPERUSER NOBYPASSRLS")
            run("CREATE ROLE {app} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE "
                f"PASSWORD '{_password(app)}'")
        else:
            made = {r[0] for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname IN (%s, %s) AND NOT rolsuper "
                "AND NOT rolbypassrls", [owner, app])}
            if made != {owner, app}:
                raise PermissionError(
                    f"This notebook runs as {conn.info.user}, which may not create roles, and "
                    f"the roles {owner} and {app} do not exist. Run it as the lab's own user, "
                    f"or grade it with `python -m labs grade`, which makes them first.")
        run("GRANT CONNECT ON DATABASE {db} TO {app}")
        run("GRANT USAGE ON SCHEMA public TO {app}")
        # the owner is the migrations role: it creates in the schema, and a role that is not
        # a superuser may only hand a table to an owner with CREATE on its schema
        run("GRANT USAGE, CREATE ON SCHEMA public TO {owner}")
        with conn.transaction():
            if conn.execute("SELECT to_regclass('public.tenants')").fetchone()[0] is None:
                conn.execute("""CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL,
                                                      plan text NOT NULL)""")
                conn.execute("""INSERT INTO tenants
                                SELECT g, CASE g WHEN 1 THEN 'Megastore' ELSE 'Shop ' || g END,
                                       CASE WHEN g = 1 THEN 'enterprise'
                                            WHEN g %% 5 = 0 THEN 'pro' ELSE 'starter' END
                                FROM generate_series(1, %s) g""", [n])
                # customers: 40% to the skewed tenant, the rest spread over the others
                conn.execute(f"""ALTER TABLE customers ADD COLUMN tenant_id int;
                    UPDATE customers SET tenant_id = CASE
                        WHEN (id * 7919) % 100 < {SKEWED_SHARE} THEN {SKEWED_TENANT}
                        ELSE 2 + (id % ({n} - 1)) END;
                    ALTER TABLE orders ADD COLUMN tenant_id int;
                    UPDATE orders o SET tenant_id = c.tenant_id FROM customers c
                        WHERE c.id = o.customer_id;
                    ALTER TABLE order_items ADD COLUMN tenant_id int;
                    UPDATE order_items i SET tenant_id = o.tenant_id FROM orders o
                        WHERE o.id = i.order_id""")
                for table in TENANT_TABLES:
                    conn.execute(f"ALTER TABLE {table} ALTER COLUMN tenant_id SET NOT NULL, "
                                 f"ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id)")
            for table in ("tenants", *TENANT_TABLES):
                conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier(table), ids["owner"]))
            run("GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders, order_items TO {app}")
            run("GRANT SELECT ON products TO {app}")
            run("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app}")
        for table in ("tenants", *TENANT_TABLES):
            conn.execute(f"VACUUM ANALYZE {table}")
    return tenancy(lab)
