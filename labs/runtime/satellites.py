"""The processes that sit beside the lab's PostgreSQL: a PgBouncer and a streaming replica.

Production PostgreSQL rarely stands alone: applications reach it through a
connection pooler, and read traffic goes to replicas that lag. Challenge
15_pooling_replicas needs both, real, started by the lab itself:

* **PgBouncer** (Debian's ``pgbouncer``, installed with apt when missing, as the
  server programs are) in *transaction* pooling mode on a free 127.0.0.1 port, in
  front of the lab's local server. Every database of the server is reachable
  through it under its own name (``* =`` in ``[databases]``). Released server
  connections are handed out round robin (``server_round_robin = 1``), so two
  consecutive transactions of one client land on different server connections
  whenever the pool holds more than one: the pitfalls of transaction pooling show
  every time, not once in a while.
* **A streaming replica**: ``pg_basebackup -R`` of the lab's local server into a
  private folder beside its data folder, started with the *same* server programs
  (the slot's bindir) as the same unprivileged user, on its own free port.
  ``recovery_min_apply_delay`` is set at run time (``ALTER SYSTEM`` then
  ``pg_reload_conf()`` on the replica) through :func:`replica_delay`, a lease
  that several notebooks and test workers can hold at once: the replica applies
  the largest delay anyone holds, and 0 when nobody does. A replication slot keeps
  the WAL the replica still needs (the primary is busy: without it segments are
  recycled before the replica reads them); the primary's ``max_slot_wal_keep_size``
  is set to 2GB when it is unlimited, so a stopped replica never fills the disk
  (a slot past that limit means a new base backup on the next start).

Both are shared by every notebook and test worker of the slot (one pair per
local server): starting takes a file lock (``fcntl``), their state is a JSON file
beside the server's own (``.lab/satellites.json``), and a running pair is
adopted rather than started twice. :func:`stop` stops both (``make db-stop``
calls it). When ``DATABASE_URL`` points at another server, or Docker provides
the database, :class:`SatellitesUnavailable` says what a notebook must skip and why.

A pooler and a replica can also be *given*: ``LAB_POOLER_URL`` and
``LAB_REPLICA_URL`` name them, and the lab uses them as they are and starts
nothing (their database part is replaced by the notebook's database). The grader
gives a graded kernel the lab's own pair this way, with the learner's role in the
URLs (:func:`admit` lets that role through PgBouncer); a learner whose database is
in Docker, or on a server of their own, sets them to that server's pooler and
replica. A replica delay then needs the right to ``ALTER SYSTEM SET
recovery_min_apply_delay`` and to call ``pg_reload_conf()`` on the given replica.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg

from .config import STATE_DIR
from .errors import LabError
from .server import (LAB_PASSWORD, LAB_USER, LocalState, _as_user, choose_port, current_slot,
                     ensure_server, local_url, port_is_free)

PGBOUNCER_PORT = 6432
REPLICA_PORT = 5532
POOL_SIZE = 4  # server connections per (database, user): small, so that reuse is visible
SKIPPED = ("the PgBouncer sections (transaction pooling pitfalls, exercise 2) and the replica "
           "sections (replication lag, read-your-writes, exercise 3)")


class SatellitesUnavailable(LabError):
    """PgBouncer or the replica cannot be started for the server the lab uses."""


GIVEN_POOLER, GIVEN_REPLICA = "LAB_POOLER_URL", "LAB_REPLICA_URL"
GIVE_THEM = ("export LAB_POOLER_URL=postgresql://USER:PASSWORD@HOST:6432/postgres and "
             "LAB_REPLICA_URL=postgresql://USER:PASSWORD@HOST:5532/postgres (the database part "
             "is replaced by the notebook's own), then restart the kernel")


def with_database(url: str, dbname: str) -> str:
    """``url`` with its database part replaced by ``dbname``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))


def _given(variable: str) -> str | None:
    """The pooler or replica the environment names, or None: the lab then runs its own."""
    return os.environ.get(variable, "").strip() or None


@dataclass
class SatelliteState:
    primary_port: int = 0
    pgbouncer_port: int = 0
    pgbouncer_pid: int = 0
    pgbouncer_dir: str = ""
    replica_port: int = 0
    replica_datadir: str = ""
    # who holds a replica delay: lease id -> [pid, milliseconds]
    delays: dict[str, list[int]] = field(default_factory=dict)


def _suffix() -> str:
    slot = current_slot()
    return "" if slot is None else f"-pg{slot}"


def state_path() -> Path:
    return STATE_DIR / f"satellites{_suffix()}.json"


def _load() -> SatelliteState:
    try:
        return SatelliteState(**json.loads(state_path().read_text()))
    except (OSError, ValueError, TypeError):
        return SatelliteState()


def _save(state: SatelliteState) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = state_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(state_path())


@contextmanager
def _locked() -> Iterator[None]:
    """One process at a time starts, stops or re-configures the satellites."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / f"satellites{_suffix()}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _primary() -> LocalState:
    """The lab's own local server, or a learner-first error saying what is skipped."""
    if os.environ.get("DATABASE_URL", "").strip():
        raise SatellitesUnavailable(
            "DATABASE_URL points at a server the lab does not run, so the lab cannot put a "
            "PgBouncer in front of it nor take a base backup of it for a replica. This notebook "
            f"skips {SKIPPED}. Unset DATABASE_URL to let the lab start its own server, or "
            f"give the notebook a pooler and a replica of that server: {GIVE_THEM}.")
    server = ensure_server()
    state = LocalState.load(current_slot())
    if server.kind != "local" or state is None:
        raise SatellitesUnavailable(
            f"The lab's database runs in Docker ({server.kind}), not as the lab's local server. "
            "Start the pooler and the replica with `docker compose up -d pgbouncer replica`, "
            f"then {GIVE_THEM.replace('USER:PASSWORD@HOST', 'lab:lab@127.0.0.1')}; "
            f"without them this notebook skips {SKIPPED}.")
    return state


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie or a recycled pid is not our pgbouncer
        return "pgbouncer" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return True


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True,
                             prepare_threshold=None) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


# --------------------------------------------------------------------------
# PgBouncer


def find_pgbouncer() -> str | None:
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def install_pgbouncer_with_apt() -> str | None:
    """On a Debian-like machine where we are root, install the pgbouncer package."""
    if os.geteuid() != 0 or not shutil.which("apt-get") or os.environ.get("LAB_NO_INSTALL"):
        return None
    print("PgBouncer not found; installing it with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "pgbouncer"], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not find_pgbouncer():
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "pgbouncer"], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return find_pgbouncer()


def pooler_url(dbname: str = "postgres") -> str:
    """A URL for ``dbname`` through the lab's PgBouncer (started if needed).

    Connect with ``prepare_threshold=None``: PgBouncer 1.18 in transaction mode does
    not carry protocol-level prepared statements from one transaction to the next."""
    return with_database(_given(GIVEN_POOLER) or start_pgbouncer()[0], dbname)


def _owned_dir(path: Path, run_as: str | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if run_as:
        shutil.chown(path, user=run_as)
        os.chmod(path, 0o700)
    return path


def _write_owned(path: Path, text: str, run_as: str | None) -> None:
    path.write_text(text)
    if run_as:
        shutil.chown(path, user=run_as)
    os.chmod(path, 0o600)


def _pgbouncer_config(folder: Path, port: int, primary_port: int) -> str:
    return f"""\
; written by the Postgres Production Lab (labs/runtime/satellites.py)
[databases]
* = host=127.0.0.1 port={primary_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {folder}/userlist.txt
pool_mode = transaction
default_pool_size = {POOL_SIZE}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
server_round_robin = 1
ignore_startup_parameters = extra_float_digits,options
server_idle_timeout = 60
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
admin_users = {LAB_USER}
"""


def start_pgbouncer() -> tuple[str, int]:
    """(admin URL through PgBouncer, its port): the running one, or a new one."""
    primary = _primary()
    with _locked():
        state = _load()
        url = local_url(state.pgbouncer_port) if state.pgbouncer_port else ""
        if (state.primary_port == primary.port and _alive(state.pgbouncer_pid)
                and _answers(url)):
            return url, state.pgbouncer_port
        if _alive(state.pgbouncer_pid):  # running for another primary port: replace it
            _kill(state.pgbouncer_pid)
        binary = find_pgbouncer() or install_pgbouncer_with_apt()
        if binary is None:
            raise SatellitesUnavailable(
                "PgBouncer is not installed and the lab could not install it. Install it "
                "(Debian/Ubuntu: sudo apt-get install pgbouncer; macOS: brew install pgbouncer), "
                f"then run the notebook again; until then it skips {SKIPPED}.")
        folder = _owned_dir(Path(primary.datadir).parent / "pgbouncer", primary.run_as)
        port, _ = choose_port(PGBOUNCER_PORT + (primary.port - 5432), default=PGBOUNCER_PORT)
        _write_owned(folder / "userlist.txt", f'"{LAB_USER}" "{LAB_PASSWORD}"\n', primary.run_as)
        _write_owned(folder / "pgbouncer.ini", _pgbouncer_config(folder, port, primary.port),
                     primary.run_as)
        proc = subprocess.run(_as_user([binary, "-d", str(folder / "pgbouncer.ini")],
                                       primary.run_as),
                              capture_output=True, text=True, cwd="/", check=False)
        url = local_url(port)
        deadline = time.monotonic() + 20
        while not _answers(url):
            if time.monotonic() > deadline or proc.returncode != 0:
                log = _tail(folder / "pgbouncer.log")
                raise SatellitesUnavailable(
                    f"PgBouncer did not start on 127.0.0.1:{port}; its log says why "
                    f"({folder / 'pgbouncer.log'}).", (proc.stderr + "\n" + log).strip()[-1500:])
            time.sleep(0.2)
        pid = int((folder / "pgbouncer.pid").read_text().strip())
        state.primary_port, state.pgbouncer_port = primary.port, port
        state.pgbouncer_pid, state.pgbouncer_dir = pid, str(folder)
        _save(state)
        return url, port


def _reload_pgbouncer(port: int) -> None:
    """RELOAD on PgBouncer's admin console: it reads its auth_file again."""
    with psycopg.connect(with_database(local_url(port), "pgbouncer"), autocommit=True,
                         cursor_factory=psycopg.ClientCursor, prepare_threshold=None) as conn:
        conn.execute("RELOAD")


def admit(role: str, password: str) -> None:
    """Let ``role`` log in through the lab's PgBouncer (a line in its auth_file, then
    RELOAD): the grader admits a graded notebook's role, and :func:`dismiss` removes it."""
    start_pgbouncer()
    with _locked():
        state = _load()
        userlist = Path(state.pgbouncer_dir) / "userlist.txt"
        lines = [line for line in userlist.read_text().splitlines()
                 if not line.startswith(f'"{role}" ')]
        lines.append('"{}" "{}"'.format(role.replace('"', '""'), password.replace('"', '""')))
        userlist.write_text("\n".join(lines) + "\n")
        _reload_pgbouncer(state.pgbouncer_port)


def dismiss(role: str) -> None:
    """Take ``role`` out of PgBouncer's auth_file again (nothing when PgBouncer is gone)."""
    with _locked():
        state = _load()
        userlist = Path(state.pgbouncer_dir or "/nonexistent") / "userlist.txt"
        if not (_alive(state.pgbouncer_pid) and userlist.exists()):
            return
        lines = [line for line in userlist.read_text().splitlines()
                 if not line.startswith(f'"{role}" ')]
        userlist.write_text("\n".join(lines) + "\n")
        _reload_pgbouncer(state.pgbouncer_port)


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _kill(pid: int, timeout: float = 10) -> None:
    try:
        os.kill(pid, signal.SIGINT)  # PgBouncer: SIGINT waits for clients; then SIGTERM
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
        if time.monotonic() > deadline - timeout / 2:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------
# the replica


def _run(cmd: list[str], what: str, run_as: str | None, env: dict | None = None) -> None:
    proc = subprocess.run(_as_user(cmd, run_as), capture_output=True, text=True, cwd="/",
                          check=False, env=env)
    if proc.returncode != 0:
        raise SatellitesUnavailable(f"The lab could not {what}.",
                                    (proc.stderr or proc.stdout).strip()[-2000:])


def _allow_replication(primary: LocalState) -> None:
    """The lab user may open a replication connection from 127.0.0.1 (idempotent)."""
    with psycopg.connect(local_url(primary.port), autocommit=True) as conn:
        rows = conn.execute("""
            SELECT count(*) FROM pg_hba_file_rules
            WHERE type = 'host' AND 'replication' = ANY(database)
              AND (user_name && ARRAY['all', %s]) AND address = '127.0.0.1'
              AND error IS NULL""", [LAB_USER]).fetchone()[0]
        if rows:
            return
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
        with open(hba, "a") as fh:  # appending keeps the file's owner and mode
            fh.write(f"\n# added by the lab for its replica\n"
                     f"host replication {LAB_USER} 127.0.0.1/32 scram-sha-256\n")
        conn.execute("SELECT pg_reload_conf()")


def _slot_name() -> str:
    return "lab_replica" + _suffix().replace("-", "_")


def _slot_usable(primary: LocalState) -> bool:
    with psycopg.connect(local_url(primary.port), autocommit=True) as conn:
        if conn.execute("SHOW max_slot_wal_keep_size").fetchone()[0] == "-1":
            # a stopped replica must not fill the primary's disk with WAL
            conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '2GB'")
            conn.execute("SELECT pg_reload_conf()")
        return bool(conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s "
            "AND wal_status IS DISTINCT FROM 'lost'", [_slot_name()]).fetchone()[0])


def _drop_slot(primary: LocalState) -> None:
    """Drop the replica's slot (once its walsender has gone), so no WAL stays pinned."""
    with psycopg.connect(local_url(primary.port), autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                               [_slot_name()]).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", [_slot_name()])
                return
            time.sleep(0.2)


def _replica_running(bindir: Path, datadir: Path, run_as: str | None) -> bool:
    proc = subprocess.run(_as_user([str(bindir / "pg_ctl"), "status", "-D", str(datadir)],
                                   run_as), capture_output=True, text=True, cwd="/", check=False)
    return proc.returncode == 0


def replica_url(dbname: str = "postgres") -> str:
    """A URL for ``dbname`` on the lab's streaming replica (started if needed)."""
    return with_database(_given(GIVEN_REPLICA) or start_replica()[0], dbname)


def start_replica() -> tuple[str, int]:
    """(admin URL of the replica, its port): the running one, or a new one."""
    primary = _primary()
    bindir = Path(primary.bindir)
    folder = Path(primary.datadir).parent / "replica"
    datadir = folder / "pgdata"
    with _locked():
        state = _load()
        if (state.replica_port and state.primary_port in (0, primary.port)
                and _replica_running(bindir, datadir, primary.run_as)
                and _answers(local_url(state.replica_port))):
            return local_url(state.replica_port), state.replica_port
        if _replica_running(bindir, datadir, primary.run_as):  # stale state: stop, rebuild
            _run([str(bindir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(datadir)],
                 "stop an old replica", primary.run_as)
        _allow_replication(primary)
        _owned_dir(folder, primary.run_as)
        port, _ = choose_port(REPLICA_PORT + (primary.port - 5432), default=REPLICA_PORT)
        # The replication slot keeps the WAL the replica has not received; without it a busy
        # primary recycles segments and the replica can never catch up. A stopped replica
        # keeps its slot, bounded by max_slot_wal_keep_size; a slot past it ("lost") means
        # a new base backup.
        if not (_slot_usable(primary) and (datadir / "PG_VERSION").exists()):
            _drop_slot(primary)
            if datadir.exists():
                shutil.rmtree(datadir)
            env = dict(os.environ, PGPASSWORD=LAB_PASSWORD)
            _run([str(bindir / "pg_basebackup"), "-D", str(datadir), "-R", "-X", "stream",
                  "-C", "-S", _slot_name(), "--no-sync", "-c", "fast", "-h", "127.0.0.1",
                  "-p", str(primary.port), "-U", LAB_USER],
                 f"take a base backup of the primary on port {primary.port} (pg_basebackup)",
                 primary.run_as, env=env)
            # -R wrote every option of pg_basebackup's libpq into primary_conninfo; the
            # server's walreceiver may link an older libpq (a fetched 18 on a system 15
            # libpq refuses "sslnegotiation"): keep only what the connection needs.
            auto = datadir / "postgresql.auto.conf"
            kept = [line for line in auto.read_text().splitlines()
                    if not line.startswith("primary_conninfo")]
            kept.append(f"primary_conninfo = 'host=127.0.0.1 port={primary.port} user={LAB_USER} "
                        f"password={LAB_PASSWORD} application_name=lab_replica'")
            auto.write_text("\n".join(kept) + "\n")
            with open(datadir / "postgresql.conf", "a") as fh:
                fh.write("\n# --- the lab's streaming replica ---\n"
                         f"unix_socket_directories = '{folder}'\n"
                         "shared_buffers = '128MB'\nhot_standby = on\n"
                         "recovery_min_apply_delay = 0\n"
                         # one syncfs() instead of an fsync per file of a large cluster
                         "recovery_init_sync_method = syncfs\n")
        logfile = folder / "replica.log"
        _run([str(bindir / "pg_ctl"), "start", "-w", "-t", "600", "-D", str(datadir),
              # no hot_standby_feedback (set here, so that a replica made before is
              # started without it too): the replica's snapshots, held back by the apply
              # delay, would hold back VACUUM in every database of the primary, and other
              # challenges measure what VACUUM removes; its slot then keeps WAL, not rows
              "-l", str(logfile), "-o", f"-p {port} -c hot_standby_feedback=off"],
             f"start the replica on port {port} (log: {logfile})", primary.run_as)
        state.primary_port, state.replica_port = primary.port, port
        state.replica_datadir, state.delays = str(datadir), {}
        _save(state)
        return local_url(port), port


def _apply_delay(state: SatelliteState) -> int:
    """Set the largest delay a live holder asks for (0 when none) on the replica."""
    state.delays = {k: v for k, v in state.delays.items() if _pid_alive(v[0])}
    ms = max((v[1] for v in state.delays.values()), default=0)
    # (not replica_url(): starting a replica takes the lock this caller already holds)
    url = _given(GIVEN_REPLICA) or local_url(state.replica_port)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{int(ms)}ms'")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 5
        while (conn.execute("SHOW recovery_min_apply_delay").fetchone()[0]
               != _shown_ms(ms)) and time.monotonic() < deadline:
            time.sleep(0.05)
    _save(state)
    return ms


def _shown_ms(ms: int) -> str:
    if ms == 0:
        return "0"
    if ms % 1000 == 0:
        return f"{ms // 1000}s" if ms % 60000 else f"{ms // 60000}min"
    return f"{ms}ms"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@contextmanager
def replica_delay(ms: int) -> Iterator[int]:
    """Hold a ``recovery_min_apply_delay`` of ``ms`` on the replica while inside.

    Several holders at once (test workers, a notebook): the replica applies the largest
    delay held; leaving the block drops this one (and, with nobody left, resets to 0)."""
    if not _given(GIVEN_REPLICA):
        start_replica()
    lease = uuid.uuid4().hex
    with _locked():
        state = _load()
        state.delays[lease] = [os.getpid(), int(ms)]
        _apply_delay(state)
    try:
        yield int(ms)
    finally:
        with _locked():
            state = _load()
            state.delays.pop(lease, None)
            _apply_delay(state)


def wait_for_replay(lsn: str, timeout: float = 120) -> bool:
    """Wait until the replica has replayed ``lsn`` (text form); False on timeout. (Right
    after a challenge database is cloned at small scale the replica replays the whole copy:
    tens of seconds.)"""
    with psycopg.connect(replica_url(), autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()[0]:
                return True
            time.sleep(0.02)
    return False


# --------------------------------------------------------------------------
# stopping (make db-stop)


def stop() -> list[str]:
    """Stop the lab's PgBouncer and replica; what was stopped, in words."""
    stopped: list[str] = []
    with _locked():
        state = _load()
        if _alive(state.pgbouncer_pid):
            _kill(state.pgbouncer_pid)
            stopped.append("PgBouncer")
        primary = LocalState.load(current_slot())
        if state.replica_datadir and primary is not None:
            bindir, datadir = Path(primary.bindir), Path(state.replica_datadir)
            if _replica_running(bindir, datadir, primary.run_as):
                _run([str(bindir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(datadir)],
                     "stop the replica", primary.run_as)
                stopped.append("the replica")
        state.pgbouncer_pid = 0
        state.delays = {}
        _save(state)
    return stopped
