"""Bad environments get one clear message each, naming the fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from labs.runtime import server
from labs.runtime.config import ROOT, current_scale
from labs.runtime.errors import BadDatabaseUrl, DatasetMissing, LabError, PortBusy, RunningAsRoot, ServerUnavailable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_down_names_the_url_and_the_fix():
    """A URL where nothing listens says the server is down and how to start one."""
    url = f"postgresql://lab:lab@127.0.0.1:{_free_port()}/postgres"
    with pytest.raises(ServerUnavailable) as info:
        server.connect_admin(url)
    text = info.value.render()
    assert "Nothing is listening" in text and "make db" in text and "127.0.0.1" in text


def test_wrong_password_is_reported_as_bad_credentials():
    """A wrong password points at the credentials in DATABASE_URL, with the password masked."""
    srv = server.ensure_server()
    url = srv.url.replace("lab:lab@", "lab:wrong-secret@")
    with pytest.raises(BadDatabaseUrl) as info:
        server.connect_admin(url)
    assert "user name or password" in info.value.summary
    assert "wrong-secret" not in info.value.render()


def test_missing_database_is_named():
    """A URL naming a database that does not exist says so."""
    srv = server.ensure_server()
    with pytest.raises(BadDatabaseUrl) as info:
        server.connect_admin(srv.url_for("no_such_database_here"))
    assert "does not exist" in info.value.summary


def test_wrong_scheme_is_rejected_before_connecting():
    """DATABASE_URL must be a postgresql:// URL."""
    with pytest.raises(BadDatabaseUrl) as info:
        server.validate_url("mysql://root@localhost/shop")
    assert "postgresql://" in info.value.summary


def test_busy_explicit_port_is_an_error_that_names_a_free_one(monkeypatch):
    """LAB_PG_PORT on a busy port fails with the next port to try."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        monkeypatch.setenv("LAB_PG_PORT", str(busy))
        with pytest.raises(PortBusy) as info:
            server.choose_port()
    assert str(busy) in info.value.summary and f"LAB_PG_PORT={busy + 1}" in info.value.summary


def test_busy_default_port_moves_on_and_says_so(monkeypatch):
    """Without LAB_PG_PORT the lab takes the next free port and explains why."""
    monkeypatch.delenv("LAB_PG_PORT", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        port, note = server.choose_port(busy)
    assert port != busy and f"Port {busy} is busy" in note


def test_root_without_an_unprivileged_user_says_what_to_create(monkeypatch):
    """As root with no usable user, the message says how to create one."""
    def no_user(name):
        raise KeyError(name)

    monkeypatch.setattr(server.pwd, "getpwnam", no_user)
    monkeypatch.setattr(server.shutil, "which", lambda name: None)
    with pytest.raises(RunningAsRoot) as info:
        server._unprivileged_user()
    assert "refuses to run as root" in info.value.summary and "LAB_PG_USER" in info.value.summary


def test_root_data_folder_is_outside_root_owned_folders():
    """When root, the server's data lives where its own user can reach it."""
    datadir = server._datadir_for("postgres")
    assert not str(datadir).startswith(str(ROOT)) and not str(datadir).startswith("/root")


def test_dataset_not_built_names_the_make_target():
    """Asking for a scale whose template is missing says which command builds it."""
    from labs.data.dataset import ensure_template

    srv = server.ensure_server()
    with pytest.raises(DatasetMissing) as info:
        ensure_template(srv, current_scale("1234567"), build_if_missing=False)
    assert "make data" in info.value.render()


def test_notebooks_show_the_message_not_a_traceback():
    """IPython renders a LabError as its message alone."""
    err = ServerUnavailable("Start it with make db.", "connection refused")
    rendered = "\n".join(err._render_traceback_())
    assert "make db" in rendered and "Traceback" not in rendered


def test_command_line_prints_the_message_without_traceback():
    """`python -m labs db` with a dead DATABASE_URL exits 2 with one clear message."""
    env = dict(os.environ, DATABASE_URL=f"postgresql://lab:lab@127.0.0.1:{_free_port()}/postgres")
    proc = subprocess.run([sys.executable, "-m", "labs", "db"], env=env, capture_output=True,
                          text=True, cwd=ROOT, check=False)
    assert proc.returncode == 2
    assert "Nothing is listening" in proc.stderr and "Traceback" not in proc.stderr


def test_errors_are_lab_errors():
    """Every environment error can be caught as LabError."""
    for cls in (ServerUnavailable, BadDatabaseUrl, PortBusy, DatasetMissing, RunningAsRoot):
        assert issubclass(cls, LabError)


def test_test_suite_aborts_once_when_the_server_is_unreachable(tmp_path):
    """pytest stops before collecting anything, with one message, when PostgreSQL is missing."""
    env = dict(os.environ, DATABASE_URL=f"postgresql://lab:lab@127.0.0.1:{_free_port()}/postgres")
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-q",
                           "tests/test_learner.py"], env=env, capture_output=True, text=True,
                          cwd=ROOT, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 3, output
    assert output.count("Nothing is listening") == 1 and "Traceback" not in output
