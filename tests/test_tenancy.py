"""The tenancy tool: roles scoped to the challenge database, created idempotently, dropped clean."""

import psycopg
import pytest

from labs.course.challenge import drop, setup
from labs.tools import tenancy


@pytest.fixture(scope="module")
def lab():
    lab = setup("tenancy_tool", sql_magic=False)
    yield lab
    lab.close()
    tenancy.drop_roles(lab)
    drop("tenancy_tool")


def _roles(lab):
    with psycopg.connect(lab.url, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                           [list(tenancy.role_names(lab))])}


def test_role_names_are_scoped_to_the_database(lab):
    """Both role names start with the challenge database's name (namespace included)."""
    assert all(name.startswith(lab.dbname) for name in tenancy.role_names(lab))


def test_prepare_is_idempotent_and_the_app_role_cannot_bypass(lab):
    """prepare runs twice; the app role logs in, is no superuser, has NOBYPASSRLS, owns nothing."""
    tenancy.prepare(lab)
    app = tenancy.prepare(lab)
    with app.connect(autocommit=True) as conn:
        row = conn.execute("""SELECT rolsuper, rolbypassrls,
                                     (SELECT count(*) FROM pg_class WHERE relowner = r.oid)
                              FROM pg_roles r WHERE rolname = current_user""").fetchone()
    assert row == (False, False, 0)
    skewed = lab.scalar("SELECT 100 * count(*) FILTER (WHERE tenant_id = 1) / count(*) FROM customers")
    assert 30 <= skewed <= 50


def test_drop_roles_leaves_no_role(lab):
    """drop_roles removes both roles, even though the tables they owned still exist."""
    tenancy.prepare(lab)
    tenancy.drop_roles(lab)
    assert _roles(lab) == set()
    assert lab.scalar("SELECT count(*) FROM orders") > 0


def test_reset_drops_the_roles_it_cannot_clone_away(lab):
    """Roles live outside the database: lab.reset() drops them before it clones again."""
    tenancy.prepare(lab)
    assert len(_roles(lab)) == 2
    lab.reset()
    assert _roles(lab) == set()
    assert lab.scalar("SELECT to_regclass('public.tenants')") is None
