"""Binary content for the large-binary challenge: a file store, seeded media, measurements.

Three things a notebook about images and documents needs:

* :class:`FileStore`, an object store on the local disk with the interface an
  S3 (or GCS, or Azure Blob) backend would implement: ``put(key, data)``,
  ``get(key)``, ``chunks(key, size)``, ``exists(key)``, ``stat(key)``, ``delete(key)``, and
  ``list()`` of :class:`StoredObject` (key, size, last modified). Keys are
  opaque strings; the *caller* decides what they mean (the challenge keys
  content by its SHA-256, which makes the store content-addressed and
  deduplicated). A ``put`` is atomic (written to a temporary file, fsynced,
  renamed into place), so a reader never sees half an object; a ``put`` of a
  key that already exists leaves the bytes alone but refreshes the object's
  last-modified time, which is what lets an orphan sweeper with a grace period
  spare content that a new upload has just re-used.
* :func:`corpus` and :func:`large_item`: deterministic media generated with
  Pillow and numpy (PNG and JPEG images from about 10 KB to 5 MB, already
  compressed; JSON and SVG documents, which compress well; one large file for
  streaming), sized by the lab's scale.
* :func:`peak_memory` (tracemalloc peak and RSS growth of one call),
  :func:`child_memory` (the same for a script run in a fresh process, where RSS
  means something) and :func:`pg_dump` (time and size of a dump, with or
  without some tables' data and the large objects).
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class StoredObject:
    """One object of a store listing, as S3's ListObjectsV2 gives it."""

    key: str
    size: int
    last_modified: dt.datetime  # UTC


class FileStore:
    """Objects as files under ``root``; the interface an object-store backend would offer."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "incoming").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"<FileStore {self.root}: {self.count()} objects>"

    # -- where a key lives
    def path(self, key: str) -> Path:
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise ValueError(f"object keys are 1-200 characters of A-Z a-z 0-9 . _ -, "
                             f"not {key!r}")
        return self.root / "objects" / key[:2] / key

    # -- the interface
    def put(self, key: str, data: bytes | Iterable[bytes]) -> int:
        """Store ``data`` (bytes, or an iterable of chunks) under ``key``; return its size.

        Atomic: the bytes go to a temporary file that is fsynced and renamed into
        place. When ``key`` already exists, its bytes are kept (for a content key
        they are the same bytes) and its last-modified time is refreshed.
        """
        target = self.path(key)
        if target.exists():
            os.utime(target)  # a sweeper's grace period now counts from this upload
            return target.stat().st_size
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = self.root / "incoming" / f"{uuid.uuid4().hex}.part"
        size = 0
        with open(temp, "wb") as fh:
            for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                fh.write(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, target)
        return size

    def get(self, key: str) -> bytes:
        """The whole object (raises KeyError when there is none)."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def chunks(self, key: str, size: int = 1 << 16) -> Iterator[bytes]:
        """The object in chunks of ``size`` bytes (the last may be shorter)."""
        try:
            fh = open(self.path(key), "rb")
        except FileNotFoundError:
            raise KeyError(key) from None
        with fh:
            while chunk := fh.read(size):
                yield chunk

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def stat(self, key: str) -> StoredObject | None:
        """One object's size and last-modified time (S3's HeadObject), or None."""
        try:
            st = self.path(key).stat()
        except FileNotFoundError:
            return None
        return StoredObject(key, st.st_size,
                            dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc))

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> bool:
        """Remove an object; True when there was one."""
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def list(self) -> list[StoredObject]:
        """Every object, sorted by key."""
        out = []
        for path in sorted((self.root / "objects").glob("*/*")):
            try:
                st = path.stat()
            except FileNotFoundError:  # deleted meanwhile
                continue
            out.append(StoredObject(path.name, st.st_size,
                                    dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc)))
        return out

    # -- for the notebook and the checks
    def count(self) -> int:
        return sum(1 for _ in (self.root / "objects").glob("*/*"))

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "objects").glob("*/*"))

    def set_modified(self, key: str, when: dt.datetime) -> None:
        """Backdate an object (what an old orphan looks like)."""
        stamp = when.timestamp()
        os.utime(self.path(key), (stamp, stamp))

    def clear(self) -> None:
        """Remove every object (the notebook's reset)."""
        for sub in ("objects", "incoming"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
            (self.root / sub).mkdir(parents=True, exist_ok=True)


def store_for(lab: Any, name: str = "files") -> FileStore:
    """The file store of a challenge's database: ``.lab/blobs/<database>/<name>``, emptied.

    The PostgreSQL server of the lab runs on this machine, so the database and
    the files live side by side; with a remote server the store would be an
    object store, with the same interface.
    """
    from ..runtime.config import STATE_DIR

    store = FileStore(STATE_DIR / "blobs" / lab.dbname / name)
    store.clear()
    return store


def sha256_hex(data: bytes | Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
        h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# seeded media


@dataclass(frozen=True)
class Item:
    """One upload: a name as the user's device called it, a media type, the bytes."""

    name: str
    media_type: str
    size_class: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)

    def __repr__(self) -> str:
        return f"<Item {self.name} {self.media_type} {self.size:,} bytes>"


# per scale: (images per size class, edge in pixels of small / medium / large images,
# MB of the large streaming item)
SCALES = {
    "tiny": {"count": 2, "edges": (60, 280, 600), "large_mb": 6, "documents": 3},
    "small": {"count": 6, "edges": (60, 280, 1300), "large_mb": 50, "documents": 10},
    "production": {"count": 20, "edges": (60, 280, 1300), "large_mb": 200, "documents": 40},
}


def _scale_name(scale: Any) -> str:
    name = getattr(scale, "name", scale)
    return name if name in SCALES else "small"


def _image(rng: Any, edge: int, fmt: str) -> bytes:
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:edge, 0:edge]
    hue = rng.integers(0, 255, 3)
    base = np.stack([(x * 255 // edge + hue[0]) % 256, (y * 255 // edge + hue[1]) % 256,
                     ((x + y) * 127 // edge + hue[2]) % 256], -1).astype(np.int16)
    pixels = np.clip(base + rng.integers(-60, 60, (edge, edge, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    if fmt == "PNG":
        Image.fromarray(pixels).save(buf, "PNG", compress_level=1)  # noise: level 9 gains little
    else:
        Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _document(rng: Any, n: int, kind: str) -> bytes:
    rows = int(rng.integers(300, 3000))
    if kind == "json":
        statuses = ["paid", "shipped", "delivered"]
        body = [{"order_id": int(rng.integers(1, 10**6)),
                 "status": statuses[int(rng.integers(0, 3))],
                 "total": round(float(rng.random()) * 500, 2),
                 "note": "Leave the parcel with the neighbour at number 12."} for _ in range(rows)]
        return json.dumps({"invoice_batch": n, "lines": body}, indent=1).encode()
    shapes = "".join(f'<rect x="{int(rng.integers(0, 800))}" y="{int(rng.integers(0, 600))}" '
                     f'width="40" height="40" fill="#{int(rng.integers(0, 1 << 24)):06x}"/>\n'
                     for _ in range(rows))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="800" height="600">\n{shapes}</svg>\n'
            ).encode()


def corpus(scale: Any = "tiny", seed: int = 9) -> list[Item]:
    """Deterministic uploads at ``scale``: PNG and JPEG images in three size classes
    (about 10 KB, 60-250 KB, and 0.3-1 MB at tiny or 1-5 MB from small up) and
    JSON and SVG documents (compressible text)."""
    import numpy as np

    spec = SCALES[_scale_name(scale)]
    rng = np.random.default_rng(seed)
    items = []
    for size_class, edge in zip(("small", "medium", "large"), spec["edges"]):
        for i in range(spec["count"]):
            for fmt, ext, mime in (("PNG", "png", "image/png"), ("JPEG", "jpg", "image/jpeg")):
                items.append(Item(f"IMG_{size_class}_{i:03d}.{ext}", mime, size_class,
                                  _image(rng, edge + 7 * i, fmt)))
    for i in range(spec["documents"]):
        kind = ("json", "svg")[i % 2]
        mime = {"json": "application/json", "svg": "image/svg+xml"}[kind]
        items.append(Item(f"doc_{i:03d}.{kind}", mime, "document", _document(rng, i, kind)))
    return items


def large_item(scale: Any = "tiny", seed: int = 9) -> Item:
    """One large, incompressible upload (a video, say): 6 MB at tiny, 50 MB at small."""
    import numpy as np

    mb = SCALES[_scale_name(scale)]["large_mb"]
    data = np.random.default_rng(seed + 1).integers(0, 256, mb << 20, dtype=np.uint8).tobytes()
    return Item(f"VID_large_{mb}MB.mp4", "video/mp4", "stream", data)


# --------------------------------------------------------------------------
# measurements


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


@dataclass
class Memory:
    """What one call cost in memory: Python's allocations and the process's RSS."""

    traced_peak: int   # bytes, tracemalloc's peak during the call
    rss_growth: int    # bytes, RSS after minus before (libpq buffers included)
    result: Any = None


def peak_memory(fn: Callable[[], Any]) -> Memory:
    """Run ``fn`` and measure its peak traced allocation and its RSS growth."""
    gc.collect()
    rss0 = rss_bytes()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if started:
            tracemalloc.stop()
    return Memory(peak, max(0, rss_bytes() - rss0), result)


# The child's peak RSS: Linux's VmHWM (ru_maxrss is inherited from the parent across
# fork and exec, so in a child of a big kernel it would never grow), else ru_maxrss.
_CHILD_PRELUDE = """
import hashlib, resource, sys, tracemalloc
import psycopg

def _high_water():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

conn = psycopg.connect(sys.argv[1])
conn.execute("SELECT 1").fetchone()
conn.rollback()
_peak0 = _high_water()
tracemalloc.start()
"""
_CHILD_EPILOGUE = """
_traced = tracemalloc.get_traced_memory()[1]
print("__MEMORY__", _traced, _high_water() - _peak0)
"""


def child_memory(body: str, url: str, *args: Any) -> Memory:
    """Run ``body`` in a fresh Python process, connected as ``conn`` to ``url``.

    A fresh process is the honest way to measure RSS: in a notebook's kernel,
    memory freed by an earlier cell is reused without the RSS growing again.
    ``sys.argv[2:]`` are ``args``; whatever ``body`` prints is ``result``.
    """
    import sys

    script = _CHILD_PRELUDE + body + _CHILD_EPILOGUE
    done = subprocess.run([sys.executable, "-c", script, url, *map(str, args)],
                          check=True, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    traced, rss = (int(x) for x in lines[-1].split()[1:])
    return Memory(traced, rss, "\n".join(lines[:-1]))


def pg_dump(lab: Any, *, exclude_data: Iterable[str] = (), large_objects: bool = True,
            compress: int = 0) -> tuple[float, int]:
    """(seconds, bytes) of ``pg_dump -Fc -Z<compress>`` of the lab's database.

    ``exclude_data`` names tables whose rows are left out (their definitions
    stay); ``large_objects=False`` leaves the large objects out (``--no-blobs``).
    Uncompressed by default: JPEG and PNG do not compress, and gzip over them is
    most of a compressed dump's time.
    """
    from ..runtime.server import find_bindir

    # a pg_dump at least as new as the server (an older one refuses to dump it)
    bindir = find_bindir(lab.server_version // 10000) or find_bindir()
    exe = str(bindir / "pg_dump") if bindir else shutil.which("pg_dump")
    if not exe:
        raise RuntimeError("pg_dump was not found: install the PostgreSQL client tools")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dump"
        cmd = [exe, "-Fc", f"-Z{compress}", "-f", str(out), "--dbname", lab.url]
        cmd += [f"--exclude-table-data={t}" for t in exclude_data]
        if not large_objects:
            cmd.append("--no-blobs")
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t0, out.stat().st_size
