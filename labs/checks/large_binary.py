"""Checks for 09_large_binary: images and documents in bytea, large objects and files.

The seed's "Handling Large Binary Data" challenge: uploads kept in the database
(``bytea``, large objects) or beside it (a content-addressed file store with a
metadata row), read without loading them whole, and cleaned up without losing
anything. Every check runs the learner's code on a ``Caller`` connection
(autocommit off, non-UTC ``TimeZone``, non-default timeouts) and inspects the
state it leaves: rows, objects in the store, large objects, their checksums.

* q1 ``stream_media(conn, media_id, chunk_size)``: the SHA-256 of every size class
  (empty, one byte, a chunk minus one, exactly one, one plus one, a seeded size no
  chunk divides, the notebook's images) round-trips; every chunk is non-empty and at
  most ``chunk_size``; a missing id raises ``KeyError``; the large item is read with a
  tracemalloc peak bounded by a small multiple of the chunk size; and another session
  replaces the content of a long stream (about a thousand chunks: a reader that takes a new
  snapshot per batch of chunks mixes too; same length, other bytes) and commits right after
  the first chunk: the stream must be wholly the old content or wholly the new one; a stream
  abandoned after its first chunk (generator closed) leaves the connection as found.
* q2 ``upload(conn, store, name, media_type, data)``: seeded uploads with the same
  bytes under two names (one object stored), one name for two contents (two phones'
  ``IMG_0001.JPG``), case variants of a name; every returned id is the row inserted
  and every row reads back its own bytes through its ``sha256`` key; then the upload
  is killed at every step in turn (before and after the store's ``put``, after each
  statement, after the commit): no committed row may ever point at content that is
  not in the store. Content already stored and backdated must be young again after an
  upload of it; a row whose content is missing does not stop an upload of those bytes
  from storing them; an INSERT cancelled (psycopg error) for bytes committed rows
  reference leaves the content in place, and so does one while another upload of the same
  bytes is in flight (content put, row uncommitted: "delete it if no row uses it" fails). After
  every statement of the first uploads another session commits an upload of its own: an id
  read back later (max(id), the newest row) is another user's.
* q3 ``delete_photo(conn, photo_id)``: large objects of several rows (one shared by a
  re-posted photo); a deleted row's object is unlinked, unless another row still
  references it; a missing id returns False and changes nothing; killed after each
  statement, the row and its object are both there or both gone; every other large
  object keeps its bytes (checksums), unreferenced ones included; during a call another
  session's SELECT on media_lo, and its INSERT (an upload, rolled back), never wait
  (lock_timeout 300 ms): no LOCK TABLE, which stalls every upload behind one delete.
* q4 ``sweep_orphans(conn, store, grace)``: a store with referenced objects (one
  old), orphans older than the grace period and one just inside it, an upload in
  flight (content written, row inserted by another session and not committed), an
  old orphan that an upload in flight has just re-used (deduplication), rows whose
  content is missing, orphan and referenced large objects, and a large object in an
  uncommitted upload. The in-flight uploads must survive and read back once their
  rows commit; every orphan older than the grace period is gone; the rows without
  content are reported and kept; the report is exact; the rows and the referenced
  content are unchanged (counts and checksums). The grace period is a day or more (with a
  minutes part); the sweep runs with a non-UTC process TZ; right after its first
  ``store.list()`` an upload re-uses an old orphan (put, then an uncommitted row): it stays.
  After every statement of the sweep another session commits a photo as a large object
  with its row (a sweep that reads media_lo and pg_largeobject_metadata in two snapshots
  unlinks it). Right after the listing an upload also runs whole (content put, row
  committed): reporting it in rows_missing_content from the listing alone is wrong.
  15,000-20,000 rows of media_files and of media_lo come before the rows
  that reference an old object and a large object: a mark that reads only a first batch
  (LIMIT, fetchmany) sweeps them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import time
import tracemalloc
from typing import Any, Callable

import psycopg

from ..course import adversarial as adv
from ..course.checking import CheckFailed, call_answer, require
from ..course.left_behind import Caller, untouched
from ..data.dataset import query_checksum
from ..tools.blobstore import FileStore, Item, large_item, sha256_hex, store_for
from ..tools.stress import HookedConnection

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS lo;

-- 1. the bytes in the row: bytea, TOASTed out of line above about 2 kB
CREATE TABLE IF NOT EXISTS media_bytea (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    media_type  text NOT NULL,
    size        bigint NOT NULL,
    sha256      text NOT NULL,
    data        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- 2. the bytes in a large object (pg_largeobject), the row holds its oid
CREATE TABLE IF NOT EXISTS media_lo (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    media_type  text NOT NULL,
    size        bigint NOT NULL,
    sha256      text NOT NULL,
    content     oid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS media_lo_content_idx ON media_lo (content);

-- 3. the bytes in a file store, keyed by their SHA-256; the row is the metadata
CREATE TABLE IF NOT EXISTS media_files (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    media_type  text NOT NULL,
    size        bigint NOT NULL,
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS media_files_sha256_idx ON media_files (sha256);
"""

MEDIA_TABLES = ["media_bytea", "media_lo", "media_files"]
LONG_STREAM = 1_500_000  # bytes of q1's item replaced mid-stream (about a thousand chunks)
# shop tables no exercise touches (the small ones: watching orders would cost seconds at scale)
SHOP_TABLES = ["products", "accounts"]


class Killed(BaseException):
    """The process was killed here (a BaseException: no ``except Exception`` catches it)."""


def prepare(lab: Any) -> FileStore:
    """Create the three strategies' tables (dropping earlier ones, and their large
    objects) and return the challenge's file store, emptied."""
    with psycopg.connect(lab.url, autocommit=True) as conn:
        conn.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
        conn.execute("DROP TABLE IF EXISTS media_bytea, media_lo, media_files CASCADE")
        conn.execute(SCHEMA)
    return store_for(lab)


def store_of(lab: Any) -> FileStore:
    """The challenge's file store as it is (not emptied)."""
    from ..runtime.config import STATE_DIR

    return FileStore(STATE_DIR / "blobs" / lab.dbname / "files")


def insert_bytea(conn: psycopg.Connection, item: Item) -> int:
    return conn.execute(
        "INSERT INTO media_bytea (name, media_type, size, sha256, data) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        [item.name, item.media_type, item.size, item.sha256, item.data]).fetchone()[0]


def write_large_object(conn: psycopg.Connection, data: bytes, chunk: int = 1 << 20) -> int:
    """A new large object holding ``data``, written in chunks with ``lo_put``."""
    oid = conn.execute("SELECT lo_create(0)").fetchone()[0]
    for offset in range(0, len(data), chunk):
        conn.execute("SELECT lo_put(%s, %s, %s)", [oid, offset, data[offset:offset + chunk]])
    return oid


def insert_lo(conn: psycopg.Connection, item: Item, oid: int | None = None) -> int:
    """A media_lo row for ``item``, with a new large object (or the given one)."""
    if oid is None:
        oid = write_large_object(conn, item.data)
    return conn.execute(
        "INSERT INTO media_lo (name, media_type, size, sha256, content) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        [item.name, item.media_type, item.size, item.sha256, oid]).fetchone()[0]


def insert_file_row(conn: psycopg.Connection, name: str, media_type: str, data: bytes) -> int:
    return conn.execute(
        "INSERT INTO media_files (name, media_type, size, sha256) VALUES (%s, %s, %s, %s) "
        "RETURNING id", [name, media_type, len(data), sha256_hex(data)]).fetchone()[0]


def _bytes(rand: Any, n: int) -> bytes:
    return rand.randbytes(n)


def _lo_checksums(conn: psycopg.Connection) -> dict[int, str]:
    """An md5 of every large object, by oid, computed in the server (nothing transferred)."""
    return {int(oid): digest for oid, digest in conn.execute(
        "SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid").fetchall()}


def _lo_oids(conn: psycopg.Connection) -> dict[int, str]:
    """Every large object's oid (a dict like :func:`_lo_checksums`, without the reading)."""
    return {int(oid): "" for (oid,) in conn.execute("SELECT oid FROM pg_largeobject_metadata")}


_call = functools.partial(call_answer, passing=(Killed,))


def _verify(caller: Caller, what: str) -> None:
    caller.verify(what)
    if caller.conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        caller.conn.rollback()


# --------------------------------------------------------------------------
# q1: a streaming reader


def _consume(chunks: Any, chunk_size: int, what: str) -> bytes:
    out = bytearray()
    for n, chunk in enumerate(chunks, start=1):
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise CheckFailed(f"{what} yielded a {type(chunk).__name__}; it must yield bytes "
                              "(psycopg returns bytea as bytes).")
        if len(chunk) == 0 or len(chunk) > chunk_size:
            raise CheckFailed(f"Chunk {n} of {what} has {len(chunk):,} bytes; every chunk must "
                              f"hold between 1 and chunk_size ({chunk_size:,}) bytes.")
        out += chunk
    return bytes(out)


def q1(lab: Any, stream_media: Callable[..., Any]) -> str:
    require(stream_media)
    rand = adv.rng()
    chunk = adv.non_round(48_000, rand=rand)
    sizes = [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk, adv.non_round(5 * chunk, rand=rand)]
    planted: list[tuple[int, bytes]] = []
    big = large_item(lab.scale)
    with psycopg.connect(lab.url, autocommit=True) as admin:
        for i, n in enumerate(sizes):
            data = _bytes(rand, n)
            planted.append((insert_bytea(admin, Item(f"check_{i}.bin", "application/octet-stream",
                                                     "check", data)), data))
        for (media_id, size, digest) in admin.execute(
                "SELECT id, size, sha256 FROM media_bytea WHERE name NOT LIKE 'check%%' "
                "ORDER BY id LIMIT 12").fetchall():
            planted.append((media_id, admin.execute("SELECT data FROM media_bytea WHERE id = %s",
                                                    [media_id]).fetchone()[0]))
        big_id = insert_bytea(admin, Item("check_large.bin", big.media_type, "check", big.data))
        # a long stream (a thousand chunks) for the replacement in the middle: a reader that
        # takes a new snapshot every few chunks mixes contents as surely as one per chunk
        long_data = _bytes(rand, adv.non_round(LONG_STREAM, rand=rand))
        long_chunk = adv.non_round(LONG_STREAM // 1000, rand=rand)
        long_id = insert_bytea(admin, Item("check_long.bin", "application/octet-stream",
                                           "check", long_data))
        missing = admin.execute("SELECT coalesce(max(id), 0) + 1000 FROM media_bytea").fetchone()[0]
    try:
        with Caller(lab) as caller, untouched(lab, SHOP_TABLES + ["media_lo", "media_files"]):
            for media_id, data in planted:
                what = f"stream_media(conn, {media_id}, {chunk})"
                got = _consume(_call(stream_media, caller.conn, media_id, chunk, who=what),
                               chunk, what)
                if got != data:
                    raise CheckFailed(
                        f"{what} returned {len(got):,} bytes with another SHA-256 than the "
                        f"{len(data):,} bytes stored: read substring(data FROM offset + 1 FOR "
                        "chunk_size) for offsets 0, chunk_size, 2·chunk_size … up to "
                        "octet_length(data) (substring counts from 1).",
                        f"sha256 got {sha256_hex(got)[:12]}…, stored {sha256_hex(data)[:12]}…")
                _verify(caller, what)
            # a missing id
            what = f"stream_media(conn, {missing}, {chunk})"
            try:
                _consume(_call(stream_media, caller.conn, missing, chunk, who=what), chunk, what)
            except KeyError:
                pass
            else:
                raise CheckFailed(f"{what} ended without an error for an id that has no row: "
                                  "raise KeyError(media_id), so that a caller can tell "
                                  "'not found' (a 404) from an empty file.")
            caller.clean()
            _verify(caller, what)
            # the large item, with bounded memory
            what = f"stream_media(conn, {big_id}, {chunk})"
            bound = 8 * chunk + (1 << 20)
            digest = hashlib.sha256()
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                for part in _call(stream_media, caller.conn, big_id, chunk, who=what):
                    if len(part) == 0 or len(part) > chunk:
                        raise CheckFailed(f"{what} yielded a chunk of {len(part):,} bytes; "
                                          f"every chunk must hold 1 to {chunk:,} bytes.")
                    digest.update(part)
                    del part
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            if peak > bound:
                raise CheckFailed(
                    f"Reading the {big.size / 2**20:.0f} MB item in chunks of {chunk:,} bytes "
                    f"took {peak / 2**20:.1f} MB of Python memory at its peak: the reader holds "
                    "the whole value (one SELECT data, or a cursor that fetches many chunks "
                    "at once) instead of one chunk at a time. Fetch each chunk with its own "
                    "substring(data FROM … FOR …), or a server-side cursor with itersize = 1.",
                    f"peak {peak:,} bytes; allowed {bound:,} (8 chunks + 1 MB)")
            if digest.hexdigest() != big.sha256:
                raise CheckFailed(f"{what} returned other bytes than the large item stored.")
            _verify(caller, what)
            # a replacement committed in the middle of a long stream
            media_id, data = long_id, long_data
            other = bytes(b ^ 0x5A for b in data)
            what = f"stream_media(conn, {media_id}, {long_chunk})"
            parts = iter(_call(stream_media, caller.conn, media_id, long_chunk, who=what))
            first = next(parts, b"")
            with psycopg.connect(lab.url, autocommit=True) as other_session:
                other_session.execute("SET statement_timeout = '10s'")
                try:
                    other_session.execute("UPDATE media_bytea SET data = %s, sha256 = %s "
                                          "WHERE id = %s", [other, sha256_hex(other), media_id])
                except psycopg.errors.QueryCanceled:
                    raise CheckFailed(
                        "While your reader was between two chunks, another session's UPDATE of "
                        "the same row waited for it: the reader holds a row lock (FOR UPDATE/"
                        "FOR SHARE) and stops uploads. A consistent read needs a snapshot, "
                        "not a lock.") from None
            got = _consume([first, *parts], long_chunk, what)
            if got not in (data, other):
                mixed_at = next(i for i, (a, b) in enumerate(zip(got, data)) if a != b) \
                    if len(got) == len(data) else 0
                raise CheckFailed(
                    f"Another session replaced the content ({len(data):,} bytes, read in about "
                    f"{len(data) // long_chunk:,} chunks; same length, other bytes) and "
                    "committed after your reader's first chunk, and your reader returned a mix "
                    "of the old and the new bytes: a later chunk's SELECT took a new snapshot "
                    "(READ COMMITTED, or a transaction per batch of chunks). Read every chunk "
                    "in ONE transaction at REPEATABLE READ (SET TRANSACTION ISOLATION LEVEL "
                    "REPEATABLE READ first), or from one server-side cursor.",
                    f"new bytes from offset {mixed_at:,}; "
                    f"got sha256 {sha256_hex(got)[:12]}…, old {sha256_hex(data)[:12]}…, new "
                    f"{sha256_hex(other)[:12]}…")
            _verify(caller, what)
            # a download the client abandons after its first chunk (the generator is closed)
            media_id, data = planted[rand.choice([5, 6])]
            what = f"stream_media(conn, {media_id}, {chunk})"
            parts = iter(_call(stream_media, caller.conn, media_id, chunk, who=what))
            next(parts, b"")
            close = getattr(parts, "close", None)
            if close is not None:
                close()
            problems = caller.problems()
            if problems:
                raise CheckFailed(
                    f"A client abandoned {what} after its first chunk (the generator was closed, "
                    "as a web server does when the download is cancelled), and the connection "
                    "was not left as it was found: " + "; ".join(problems) + ". Whatever the "
                    "stream changes (its transaction, its isolation level) must be undone "
                    "when it stops early too: read inside `with conn.transaction():` (which "
                    "rolls back on GeneratorExit), restore settings in a finally.")
            _verify(caller, what)
    finally:
        with psycopg.connect(lab.url, autocommit=True) as admin:
            admin.execute("DELETE FROM media_bytea WHERE name LIKE 'check%%'")
    return (f"every size class round-trips (SHA-256), {big.size / 2**20:.0f} MB streamed in "
            f"{peak / 2**20:.1f} MB, one snapshot for the whole stream")


# --------------------------------------------------------------------------
# q2: a crash-safe, deduplicating upload


class _StepStore:
    """The store, with a kill switch before and after every ``put`` and ``delete``."""

    def __init__(self, store: FileStore, step: Callable[[str], None]) -> None:
        self._store, self._step = store, step

    def put(self, key: str, data: Any) -> int:
        self._step(f"before store.put({key[:16]}…)")
        size = self._store.put(key, data)
        self._step(f"after store.put({key[:16]}…)")
        return size

    def delete(self, key: str) -> bool:
        self._step(f"before store.delete({key[:16]}…)")
        done = self._store.delete(key)
        self._step(f"after store.delete({key[:16]}…)")
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _Killer:
    def __init__(self, at: int | None) -> None:
        self.at, self.n, self.where = at, 0, ""

    def __call__(self, what: str) -> None:
        self.n += 1
        if self.n == self.at:
            self.where = what
            raise Killed(what)


class _FileUploads:
    """After every statement of an upload, another session commits an upload of its own (a
    media_files row whose content is already in the store): a newer id than the caller's."""

    LIMIT = 60

    def __init__(self, lab: Any, store: FileStore, rand: Any) -> None:
        self.conn = psycopg.connect(lab.url, autocommit=True)
        self.conn.execute("SET lock_timeout = '1s'")
        self.data = _bytes(rand, adv.non_round(1200, rand=rand))
        store.put(sha256_hex(self.data), self.data)
        self.ids: set[int] = set()

    def __call__(self, n: int, sql: Any) -> None:
        if len(self.ids) >= self.LIMIT or self.conn.closed:
            return
        try:
            self.ids.add(insert_file_row(self.conn, f"check_race_{len(self.ids)}.png",
                                         "image/png", self.data))
        except psycopg.Error:
            pass  # the upload holds a lock others wait for: not this probe's business

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.execute("DELETE FROM media_files WHERE id = ANY(%s)", [list(self.ids)])
            self.conn.close()


def _dangling(lab: Any, store: FileStore) -> list[tuple[int, str]]:
    """Committed media_files rows whose content is missing or not what the key says."""
    out = []
    with psycopg.connect(lab.url, autocommit=True) as conn:
        for media_id, name, size, key in conn.execute(
                "SELECT id, name, size, sha256 FROM media_files ORDER BY id").fetchall():
            if not store.exists(key):
                out.append((media_id, f"{name}: no object {key[:12]}… in the store"))
            elif store.size(key) != size:
                out.append((media_id, f"{name}: object {key[:12]}… has {store.size(key)} bytes, "
                                      f"the row says {size}"))
    return out


def q2(lab: Any, upload: Callable[..., Any]) -> str:
    require(upload)
    rand = adv.rng()
    store = store_of(lab)
    known_dangling = {i for i, _ in _dangling(lab, store)}
    watcher = psycopg.connect(lab.url, autocommit=True)
    racer = None
    try:
        shared = _bytes(rand, adv.non_round(3000, rand=rand))
        phone = rand.choice(["IMG_0001.JPG", "IMG_1000.jpg", "photo.jpg"])
        variants = adv.case_variants(f"Holiday_{rand.randint(10, 99)}.png", rand=rand)
        uploads = [(f"cat_{rand.randint(100, 999)}.png", "image/png", shared),
                   (f"copy of cat_{rand.randint(100, 999)}.png", "image/png", shared),
                   (phone, "image/jpeg", _bytes(rand, adv.non_round(20_000, rand=rand))),
                   (phone, "image/jpeg", _bytes(rand, adv.non_round(20_000, rand=rand))),
                   *[(v, "image/png", _bytes(rand, adv.non_round(900, rand=rand)))
                     for v in variants],
                   ("empty.txt", "text/plain", b"")]
        rand.shuffle(uploads)
        # other users upload too: after each statement of an upload, another session commits
        # a row of its own (content already stored), so the newest id is often not this one
        racer = _FileUploads(lab, store, rand)
        objects_before = {o.key for o in store.list()}
        ids: dict[int, tuple[str, bytes]] = {}
        with untouched(lab, SHOP_TABLES + ["media_bytea", "media_lo"]), Caller(lab) as caller:
            for name, media_type, data in uploads:
                what = f"upload(conn, store, {name!r}, {media_type!r}, <{len(data):,} bytes>)"
                media_id = _call(upload, HookedConnection(caller.conn, racer), store, name,
                                 media_type, data, who=what)
                _verify(caller, what)
                row = watcher.execute("SELECT name, media_type, size, sha256 FROM media_files "
                                      "WHERE id = %s", [media_id]).fetchone()
                if row is None:
                    raise CheckFailed(f"{what} returned {media_id!r}, but media_files has no "
                                      "committed row with that id: return the id of the row you "
                                      "inserted (INSERT … RETURNING id), after the COMMIT.")
                if media_id in racer.ids:
                    raise CheckFailed(
                        f"{what} returned id {media_id}, the row of ANOTHER user's upload that "
                        "committed while yours ran: the id came from a later query (max(id), "
                        "the newest row, currval of a shared sequence read too late, a lookup "
                        "by name or size), not from your own INSERT. Take the id from the "
                        "statement that inserted the row: INSERT … RETURNING id.",
                        f"{len(racer.ids)} other uploads committed during your calls")
                if row[:3] != (name, media_type, len(data)):
                    raise CheckFailed(f"{what} returned id {media_id}, whose row says "
                                      f"{row[:3]!r}: store the name, media type and size of "
                                      "this upload.")
                ids[media_id] = (name, data)
        # every row reads back its own bytes, through the key in its row
        for media_id, (name, data) in ids.items():
            key = watcher.execute("SELECT sha256 FROM media_files WHERE id = %s",
                                  [media_id]).fetchone()[0]
            try:
                got = store.get(key)
            except KeyError:
                got = None
            if got is None:
                raise CheckFailed(
                    f"The row of upload {name!r} (id {media_id}) names content {key[:16]}… that "
                    "is not in the store: put the bytes under the very key the row stores "
                    "(store.put(key, data) with key = the SHA-256 in the row).")
            if got != data:
                namesakes = sum(1 for other, _ in ids.values() if other == name)
                raise CheckFailed(
                    f"The row of upload {name!r} (id {media_id}) does not read back the bytes "
                    "uploaded"
                    + (": two uploads with the same name (two phones both send IMG_0001.JPG) "
                       "were treated as one file" if namesakes > 1 else "")
                    + ". Deduplicate by content: the key is the SHA-256 of the bytes "
                    "(hashlib.sha256(data).hexdigest()), stored in the row's sha256.",
                    f"row key {key[:16]}…; the object holds {len(got):,} bytes, the upload "
                    f"had {len(data):,}")
            if key != sha256_hex(data):
                raise CheckFailed(f"The row of upload {name!r} keys its content as {key[:16]}…, "
                                  "not by the SHA-256 of its bytes: the store must be "
                                  "content-addressed (same bytes, same key).")
        distinct = {sha256_hex(d) for _, d in ids.values()}
        added = {o.key for o in store.list()} - objects_before
        if len(added) > len(distinct - objects_before):
            raise CheckFailed(
                f"{len(ids)} uploads of {len(distinct)} distinct contents added {len(added)} "
                "objects to the store: the same bytes were stored twice. Key objects by the "
                "SHA-256 of their content, so a second upload of the same photo is one more row and "
                "no more "
                "bytes.")
        with Caller(lab) as caller:
            # 1. content already in the store, old enough for a sweep: the upload re-uses it
            #    and must make it young again (else the sweep removes it before the row commits)
            key = sha256_hex(shared)
            age = dt.timedelta(days=rand.randint(2, 9), minutes=rand.randint(1, 59))
            store.set_modified(key, dt.datetime.now(dt.timezone.utc) - age)
            started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)
            name = f"repost_{rand.randint(100, 999)}.png"
            what = f"upload(conn, store, {name!r}, 'image/png', <{len(shared):,} bytes>)"
            _call(upload, caller.conn, store, name, "image/png", shared, who=what)
            _verify(caller, what)
            seen = store.stat(key)
            if seen is None or seen.last_modified < started:
                raise CheckFailed(
                    f"{what} re-used content that was already in the store, last modified days "
                    "ago, and left it that old: an orphan sweep with a grace period sees an old "
                    "object, and if it runs before the row commits (or after the row it read "
                    "was deleted), it removes the content and the new row is dangling. Call "
                    "store.put(key, data) on every upload: for an existing key it keeps the "
                    "bytes and refreshes the last-modified time.")
            # 2. a row whose content is missing (a store restored from an older backup):
            #    an upload of those bytes must store them, whatever the rows say
            lost = _bytes(rand, adv.non_round(1500, rand=rand))
            lost_id = insert_file_row(watcher, f"restored_{rand.randint(100, 999)}.jpg",
                                      "image/jpeg", lost)
            name = f"again_{rand.randint(100, 999)}.jpg"
            what = f"upload(conn, store, {name!r}, 'image/jpeg', <{len(lost):,} bytes>)"
            new_id = _call(upload, caller.conn, store, name, "image/jpeg", lost, who=what)
            _verify(caller, what)
            known_dangling.discard(lost_id)
            if not store.exists(sha256_hex(lost)):
                raise CheckFailed(
                    f"{what} committed row {new_id} pointing at content that is not in the store "
                    f"(a dangling reference): another row (id {lost_id}) already had that "
                    "SHA-256, so the upload skipped the bytes, but that row's content was "
                    "missing. The rows do not prove the store holds anything: always "
                    "store.put(key, data), then insert the row.")
            # 3. the INSERT fails (a statement timeout) for bytes committed rows reference
            name = f"timeout_{rand.randint(100, 999)}.png"
            what = f"upload(conn, store, {name!r}, 'image/png', <{len(shared):,} bytes>)"
            client = psycopg.connect(lab.url)

            def cancel(n: int, sql: Any) -> None:
                raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

            try:
                upload(HookedConnection(client, cancel), store, name, "image/png", shared)
            except psycopg.Error:
                pass
            finally:
                client.close()
            if not store.exists(key):
                raise CheckFailed(
                    f"{what} failed (its INSERT was cancelled) and the content went with it, "
                    "although committed rows reference those bytes (an earlier upload of the "
                    "same photo): those rows are now dangling. With content addressing, an "
                    "object may belong to other rows: never delete it on a failed upload; "
                    "the orphan sweep removes it later if no row references it.")
            # 4. the INSERT fails while another upload of the same bytes is in flight (its
            #    content put, its row inserted and not committed yet): no committed row
            #    references the bytes, and still they are not this upload's to delete
            twin = _bytes(rand, adv.non_round(2200, rand=rand))
            twin_key = sha256_hex(twin)
            name = f"retry_{rand.randint(100, 999)}.jpg"
            what = f"upload(conn, store, {name!r}, 'image/jpeg', <{len(twin):,} bytes>)"
            flight = psycopg.connect(lab.url)
            client = psycopg.connect(lab.url)
            try:
                store.put(twin_key, twin)
                insert_file_row(flight, f"twin_{rand.randint(100, 999)}.jpg", "image/jpeg", twin)
                failed: list[bool] = []

                def cancel_first_write(n: int, sql: Any) -> None:
                    if failed or client.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                        return
                    if client.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL"
                                      ).fetchone()[0]:
                        failed.append(True)
                        raise psycopg.errors.QueryCanceled(
                            "canceling statement due to statement timeout")

                try:
                    upload(HookedConnection(client, cancel_first_write), store, name,
                           "image/jpeg", twin)
                except psycopg.Error:
                    pass
                gone = not store.exists(twin_key)
            finally:
                client.close()
                flight.rollback()
                flight.close()
            if gone:
                raise CheckFailed(
                    f"{what} failed (its INSERT was cancelled) and deleted the content, while "
                    "another upload of the same bytes was in flight (its content stored, its row "
                    "inserted and not committed yet, so no query of yours could see it): once "
                    "that row commits, it points at nothing. A failed upload leaves the content "
                    "in place, whoever seems to use it; only the sweep, with its grace period, "
                    "removes unreferenced content.")
        # killed at every step in turn
        steps = 0
        for at in range(1, 30):
            killer = _Killer(at)
            data = _bytes(rand, adv.non_round(5000, rand=rand))
            name = f"killed_{at}.bin"
            client = psycopg.connect(lab.url)  # (its manners were judged above: Caller)
            finished = False
            try:
                hooked = HookedConnection(client, lambda n, sql: killer(f"after statement {n} "
                                                                         f"({str(sql)[:40]!s})"))
                _call(upload, hooked, _StepStore(store, killer), name, "application/octet-stream",
                      data, who=f"upload(conn, store, {name!r}, …)")
                finished = True
            except Killed:
                pass
            finally:
                client.close()  # a killed client: the server rolls back what was not committed
            bad = [d for i, d in _dangling(lab, store) if i not in known_dangling]
            if bad:
                raise CheckFailed(
                    f"The upload was killed {killer.where} and left a committed row pointing at "
                    "content that is not in the store (a dangling reference: every reader of that "
                    "row gets an error). Write the content first (store.put), and only then "
                    "insert and commit the row.", bad[0][1])
            if finished:
                steps = at - 1
                break
    finally:
        watcher.close()
        if racer is not None:
            racer.close()
    return (f"{len(ids)} uploads, {len(distinct)} objects (deduplicated by SHA-256); killed at "
            f"each of {steps} steps, no row ever pointed at missing content")


# --------------------------------------------------------------------------
# q3: deleting a row releases its large object


def q3(lab: Any, delete_photo: Callable[..., Any]) -> str:
    require(delete_photo)
    rand = adv.rng()
    with psycopg.connect(lab.url, autocommit=True) as admin:
        def plant(n: int, oid: int | None = None) -> int:
            data = _bytes(rand, adv.non_round(n, rand=rand))
            return insert_lo(admin, Item(f"check_{rand.randint(1000, 9999)}.jpg", "image/jpeg",
                                         "check", data), oid)

        alone = [plant(20_000) for _ in range(3)]
        first_shared = plant(15_000)
        oid = admin.execute("SELECT content FROM media_lo WHERE id = %s",
                            [first_shared]).fetchone()[0]
        reposted = plant(15_000, oid)  # a re-posted photo: a second row, the same object
        # large objects no media_lo row references: another table's attachment, or one a
        # client committed before its row; a photo delete must not touch them
        strangers = [write_large_object(admin, _bytes(rand, adv.non_round(n, rand=rand)))
                     for n in (4000, 9000)]
        missing = admin.execute("SELECT coalesce(max(id), 0) + 1000 FROM media_lo").fetchone()[0]

    watcher = psycopg.connect(lab.url, autocommit=True)

    def state() -> tuple[dict[int, int], dict[int, str]]:
        rows = dict(watcher.execute("SELECT id, content FROM media_lo").fetchall())
        return rows, _lo_oids(watcher)

    def expect(rows: dict[int, int], objects: dict[int, str], photo_id: int
               ) -> tuple[dict[int, int], dict[int, str]]:
        rows = dict(rows)
        gone = rows.pop(photo_id, None)
        objects = dict(objects)
        if gone is not None and gone not in rows.values():
            objects.pop(gone, None)
        return rows, objects

    def judge(before: tuple, after: tuple, photo_id: int, what: str) -> None:
        want_rows, want_objects = expect(*before, photo_id)
        rows, objects = after
        if rows != want_rows:
            raise CheckFailed(f"After {what}, media_lo holds other rows than all but photo "
                              f"{photo_id}: delete exactly that row.",
                              f"rows {len(before[0])} → {len(rows)}")
        leaked = set(objects) - set(want_objects)
        if leaked:
            raise CheckFailed(
                f"After {what}, the row is gone but its large object {sorted(leaked)[0]} still "
                "exists, referenced by no row: a leak (large objects live in pg_largeobject, "
                "apart from the row; DELETE of the row does not remove them). Call "
                "lo_unlink(content) in the same transaction as the DELETE.",
                f"{len(leaked)} object(s) leaked")
        lost = set(want_objects) - set(objects)
        unowned = sorted(o for o in lost if o not in rows.values())
        if unowned:
            raise CheckFailed(
                f"After {what}, large object {unowned[0]} was unlinked, and it was not the "
                "deleted photo's: no media_lo row references it, but pg_largeobject is shared "
                "by the whole database (another table's attachment, an object written before "
                "its row commits). Unlink only the oid the DELETE … RETURNING content gave "
                "you, when no other row references it; sweeping unreferenced objects is a "
                "separate job with its own rules.", f"{len(unowned)} object(s) unlinked")
        if lost:
            holders = [i for i, o in rows.items() if o in lost]
            raise CheckFailed(
                f"After {what}, large object {sorted(lost)[0]} was unlinked while photo "
                f"{holders[0] if holders else '?'} still references it (a re-posted photo shares "
                "its object): that photo is now broken. Unlink only when no other row "
                "references the object (… WHERE NOT EXISTS (SELECT 1 FROM media_lo WHERE "
                "content = …)); the lo extension's lo_manage trigger cannot know that.")

    with psycopg.connect(lab.url, autocommit=True) as conn:
        sums_before = _lo_checksums(conn)
    try:
        with untouched(lab, SHOP_TABLES + ["media_bytea", "media_files"]):
            with Caller(lab) as caller:
                for photo_id, want in [(missing, False), (first_shared, True), (alone[1], True),
                                       (reposted, True), (missing + 1, False)]:
                    what = f"delete_photo(conn, {photo_id})"
                    before = state()
                    got = _call(delete_photo, caller.conn, photo_id, who=what)
                    _verify(caller, what)
                    judge(before, state(), photo_id, what)
                    if got is not want:
                        raise CheckFailed(f"{what} returned {got!r}; it should return {want} "
                                          "(True when it deleted the photo, False when there "
                                          "was none).")
            # readers of the gallery never wait for a delete
            photo_id = alone[2]
            what = f"delete_photo(conn, {photo_id})"
            before = state()
            prober = psycopg.connect(lab.url, autocommit=True)
            prober.execute("SET lock_timeout = '300ms'")
            waited: list[str] = []

            stalled: list[str] = []

            def probe(n: int, sql: Any) -> None:
                try:
                    prober.execute("SELECT count(*) FROM media_lo").fetchone()
                except psycopg.errors.LockNotAvailable:
                    waited.append(' '.join(str(sql).split())[:60])
                try:  # another user's upload, rolled back
                    with prober.transaction(force_rollback=True):
                        prober.execute("INSERT INTO media_lo (name, media_type, size, sha256, "
                                       "content) VALUES ('check_probe.jpg', 'image/jpeg', 0, "
                                       "'', 0)")
                except psycopg.errors.LockNotAvailable:
                    stalled.append(' '.join(str(sql).split())[:60])

            client = psycopg.connect(lab.url)
            try:
                _call(delete_photo, HookedConnection(client, probe), photo_id, who=what)
            finally:
                client.close()
                prober.close()
            if waited:
                raise CheckFailed(
                    f"While {what} ran (after its statement {waited[0]!r}), another session's "
                    "SELECT on media_lo waited for a lock: the delete locks the whole table "
                    "(LOCK TABLE takes ACCESS EXCLUSIVE), so every reader of the gallery queues "
                    "behind it. DELETE … WHERE id = … locks only its row; the NOT EXISTS "
                    "check needs no table lock.")
            if stalled:
                raise CheckFailed(
                    f"While {what} ran (after its statement {stalled[0]!r}), another session's "
                    "upload (an INSERT into media_lo) waited for a lock: the delete locks the "
                    "whole table against writers (LOCK TABLE … IN SHARE / EXCLUSIVE MODE), so "
                    "every upload of every user queues behind one photo's delete. DELETE … "
                    "WHERE id = … locks only its row; to serialise two deletes of re-posts of "
                    "the same object, lock that object only (pg_advisory_xact_lock(oid)).")
            judge(before, state(), photo_id, what)
            # killed after each statement: both there or both gone
            for at in range(1, 6):
                before = state()
                photo_id = alone[0]  # (alone[1] went in the calls above)
                killer = _Killer(at)
                client = psycopg.connect(lab.url)
                finished = False
                try:
                    hooked = HookedConnection(client, lambda n, sql: killer(
                        f"after statement {n} ({' '.join(str(sql).split())[:50]})"))
                    _call(delete_photo, hooked, photo_id, who=f"delete_photo(conn, {photo_id})")
                    finished = True
                except Killed:
                    pass
                finally:
                    client.close()
                after = state()
                if finished:
                    judge(before, after, photo_id, f"delete_photo(conn, {photo_id})")
                    break
                if after == before:
                    continue
                rows, objects = after
                if photo_id not in rows and before[0][photo_id] in objects:
                    raise CheckFailed(
                        f"delete_photo(conn, {photo_id}) was killed {killer.where}, and the row "
                        "was gone while its large object stayed, for good: the DELETE committed "
                        "before the lo_unlink. Delete the row and unlink its object in one "
                        "transaction.")
                judge(before, after, photo_id, f"delete_photo killed {killer.where}")
                break
            with psycopg.connect(lab.url, autocommit=True) as conn:
                sums_after = _lo_checksums(conn)
            changed = [o for o, digest in sums_after.items() if sums_before.get(o) != digest]
            if changed:
                raise CheckFailed(f"Large object {changed[0]} holds other bytes after your "
                                  "deletes: deleting a photo may not write to any other object.")
    finally:
        watcher.close()
        with psycopg.connect(lab.url, autocommit=True) as admin:
            admin.execute("SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m "
                          "WHERE m.oid IN (SELECT content FROM media_lo WHERE name LIKE 'check%%') "
                          "AND NOT EXISTS (SELECT 1 FROM media_lo l WHERE l.content = m.oid "
                          "AND l.name NOT LIKE 'check%%')")
            admin.execute("DELETE FROM media_lo WHERE name LIKE 'check%%'")
            admin.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata "
                          "WHERE oid = ANY(%s::oid[])", [strangers])
    return ("each deleted photo's large object unlinked in the same transaction, a shared "
            "one kept while another photo uses it, every other object unchanged")


# --------------------------------------------------------------------------
# q4: mark and sweep, with a grace period


class _ListHookStore:
    """The store, running ``after_list`` once, right after the first ``list()`` returned."""

    def __init__(self, store: FileStore, after_list: Callable[[], None]) -> None:
        self._store, self._after_list, self._done = store, after_list, False

    def list(self) -> list[Any]:
        out = self._store.list()
        if not self._done:
            self._done = True
            self._after_list()
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


FILLERS = (15_000, 20_000)  # rows planted before the referencing rows that matter
_SWEPT_ROWS = {"media_bytea": "SELECT * FROM media_bytea",
               # (the upload made whole during the sweep is judged on its own)
               "media_files": "SELECT * FROM media_files WHERE name <> 'kept_after_listing.png'",
               # the uploads made while the sweep runs are judged on their own
               "media_lo": "SELECT * FROM media_lo WHERE name NOT LIKE 'sweep\\_race\\_%%'"}


class _LoUploads:
    """After every statement of the sweep, another session uploads a photo as a large object
    (lo and media_lo row in one transaction, committed): a sweep must never unlink it."""

    LIMIT = 200

    def __init__(self, lab: Any, rand: Any) -> None:
        self.conn = psycopg.connect(lab.url, autocommit=True)
        self.conn.execute("SET lock_timeout = '1s'")
        self.rand = rand
        self.uploads: dict[int, str] = {}

    def __call__(self, n: int, sql: Any) -> None:
        if len(self.uploads) >= self.LIMIT or self.conn.closed:
            return
        data = _bytes(self.rand, adv.non_round(3000, rand=self.rand))
        try:
            with self.conn.transaction():
                oid = write_large_object(self.conn, data)
                insert_lo(self.conn, Item(f"sweep_race_{n}.jpg", "image/jpeg", "check", data),
                          oid)
        except psycopg.Error:
            return  # the sweep holds a lock uploads wait for: judged elsewhere, not here
        self.uploads[int(oid)] = hashlib.md5(data).hexdigest()

    def close(self) -> None:
        self.conn.close()


def q4(lab: Any, sweep_orphans: Callable[..., Any]) -> str:
    require(sweep_orphans)
    rand = adv.rng()
    store = store_of(lab)
    # a day or more, with a minutes part: timedelta.seconds (the field, not the total) is wrong
    grace = dt.timedelta(days=rand.randint(1, 3), minutes=rand.randint(10, 59),
                         seconds=rand.randint(1, 59))
    now = dt.datetime.now(dt.timezone.utc)

    def blob(n: int) -> bytes:
        return _bytes(rand, adv.non_round(n, rand=rand))

    admin = psycopg.connect(lab.url, autocommit=True)
    flight = psycopg.connect(lab.url)  # the upload in flight: its transaction stays open
    try:
        # referenced content, one of it old
        referenced = []
        contents = [blob(4000) for _ in range(3)]
        for data in contents:
            store.put(sha256_hex(data), data)
        # thousands of rows before the others (a shop's table is not 30 rows): a mark that
        # reads only the first batch of references (LIMIT, fetchmany) misses the rest
        fillers = rand.randint(*FILLERS)
        admin.execute("INSERT INTO media_files (name, media_type, size, sha256) "
                      "SELECT 'kept_filler_' || g, 'image/png', %s, %s "
                      "FROM generate_series(1, %s) AS g",
                      [len(contents[1]), sha256_hex(contents[1]), fillers])
        for i, data in enumerate(contents):
            insert_file_row(admin, f"kept_{i}.png", "image/png", data)
            referenced.append(sha256_hex(data))
        store.set_modified(referenced[0], now - 3 * grace)
        # orphans: old ones (gone), one just inside the grace period (kept)
        old_orphans = []
        for age in (grace + dt.timedelta(minutes=2), 2 * grace, 5 * grace):
            data = blob(3000)
            store.put(sha256_hex(data), data)
            store.set_modified(sha256_hex(data), now - age)
            old_orphans.append(sha256_hex(data))
        # an old orphan that an upload re-uses while the sweep runs (after its listing)
        revived = blob(2800)
        store.put(sha256_hex(revived), revived)
        store.set_modified(sha256_hex(revived), now - 3 * grace)
        young = blob(3000)
        store.put(sha256_hex(young), young)
        store.set_modified(sha256_hex(young), now - grace + dt.timedelta(minutes=2))
        # rows whose content is missing: report, keep
        missing_rows = [insert_file_row(admin, f"lost_{i}.jpg", "image/jpeg", blob(2000))
                        for i in range(2)]
        # uploads in flight: content written, row inserted and not committed; one of them
        # re-uses an old orphan's bytes (deduplication: the put refreshes its age)
        in_flight = blob(6000)
        store.put(sha256_hex(in_flight), in_flight)
        reused = blob(2500)
        store.put(sha256_hex(reused), reused)
        store.set_modified(sha256_hex(reused), now - 4 * grace)
        store.put(sha256_hex(reused), reused)  # the in-flight upload's own put
        insert_file_row(flight, "in_flight.mov", "video/quicktime", in_flight)
        insert_file_row(flight, "reused.png", "image/png", reused)
        lo_flight_data = blob(7000)
        lo_flight = insert_lo(flight, Item("in_flight_lo.jpg", "image/jpeg", "check",
                                           lo_flight_data))
        # large objects: orphans (gone) and referenced ones
        lo_orphans = [write_large_object(admin, blob(5000)) for _ in range(2)]
        shared_lo = insert_lo(admin, Item("kept_lo.jpg", "image/jpeg", "check", blob(5000)))
        admin.execute("INSERT INTO media_lo (name, media_type, size, sha256, content) "
                      "SELECT 'kept_filler_' || g, media_type, size, sha256, content "
                      "FROM media_lo, generate_series(1, %s) AS g WHERE id = %s",
                      [fillers, shared_lo])
        insert_lo(admin, Item("kept_lo_late.jpg", "image/jpeg", "check", blob(5000)))

        # what the report must say, from the state as the sweeper will find it
        rows = admin.execute("SELECT id, sha256 FROM media_files").fetchall()
        keys = {k for _, k in rows}
        cutoff = dt.datetime.now(dt.timezone.utc) - grace
        objects = store.list()
        want_removed = sorted(o.key for o in objects
                              if o.key not in keys and o.last_modified < cutoff)
        present = {o.key for o in objects}
        want_missing = sorted(i for i, k in rows if k not in present)
        want_unlinked = sorted(int(o) for (o,) in admin.execute(
            "SELECT oid FROM pg_largeobject_metadata m WHERE NOT EXISTS "
            "(SELECT 1 FROM media_lo WHERE content = m.oid)").fetchall())
        assert set(old_orphans) <= set(want_removed) and set(lo_orphans) <= set(want_unlinked)
        want_removed.remove(sha256_hex(revived))  # re-used during the sweep: it stays
        kept_objects = {o.key: store.size(o.key) for o in objects if o.key not in want_removed}
        kept_sums = {k: sha256_hex(store.chunks(k)) for k in kept_objects}
        los_before = _lo_checksums(admin)
        rows_before = {t: query_checksum(admin, _SWEPT_ROWS[t]) for t in MEDIA_TABLES}

        late = blob(2600)  # an upload made whole after the listing: content put, row committed
        late_ids: list[int] = []

        def revive() -> None:  # the upload's put (refreshing the age), then its row, uncommitted
            store.put(sha256_hex(revived), revived)
            insert_file_row(flight, "revived.png", "image/png", revived)
            store.put(sha256_hex(late), late)
            late_ids.append(insert_file_row(admin, "kept_after_listing.png", "image/png", late))

        racer = _LoUploads(lab, rand)
        # the sweep runs in a process whose local time is not UTC (naive now() is wrong)
        zone = adv.non_utc_zone(rand=rand)
        saved_tz = os.environ.get("TZ")
        os.environ["TZ"] = zone
        time.tzset()
        try:
            with untouched(lab, SHOP_TABLES), Caller(lab) as caller:
                what = f"sweep_orphans(conn, store, {grace!r})"
                hooked = HookedConnection(caller.conn, racer)
                report = _call(sweep_orphans, hooked, _ListHookStore(store, revive),
                               grace, who=what)
                _verify(caller, what)
        finally:
            if saved_tz is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = saved_tz
            time.tzset()

        for key, label in [(sha256_hex(in_flight), "in_flight.mov"),
                           (sha256_hex(reused), "reused.png"),
                           (sha256_hex(revived), "revived.png")]:
            if not store.exists(key):
                raise CheckFailed(
                    f"The sweep removed the content of an upload in flight ({label}: its content "
                    "was written a moment ago, its row inserted by another session and not "
                    "committed yet, so the sweep could not see it). Once that row commits, it "
                    "points at nothing. Remove only unreferenced objects older than the grace "
                    "period (obj.last_modified < now - grace).",
                    "the re-used one had old bytes whose age the new upload's put refreshed"
                    if label == "reused.png" else
                    "an upload re-used that old orphan's bytes after your sweep listed the "
                    "store (its put refreshed the age): read the object's age again "
                    "(store.stat) right before deleting it" if label == "revived.png" else "")
        if not store.exists(sha256_hex(young)):
            raise CheckFailed(
                f"The sweep removed an orphan {grace - dt.timedelta(minutes=2)} old, inside the "
                f"grace period of {grace}: remove only objects whose last_modified is older "
                "than now - grace (an upload may take that long to commit its row). Compare "
                "aware UTC times (datetime.now(timezone.utc) - grace; the process ran in "
                f"{zone}, where a naive now() is local time), and use the whole timedelta "
                "(grace itself, or grace.total_seconds(); grace.seconds drops the days).")
        with psycopg.connect(lab.url, autocommit=True) as conn:
            left = {i for (i,) in conn.execute("SELECT id FROM media_files WHERE id = ANY(%s)",
                                               [missing_rows]).fetchall()}
        if left != set(missing_rows):
            raise CheckFailed(
                "The sweep deleted rows whose content is missing: those are not orphans but "
                "damage (a restore from another backup, a bucket emptied by hand), and deleting "
                "the row destroys the evidence and the name a restore needs. Report their ids "
                "in rows_missing_content and leave them.")
        still = [k for k in old_orphans if store.exists(k)]
        if still:
            raise CheckFailed(f"After the sweep, {len(still)} unreferenced object(s) older than "
                              f"the grace period of {grace} are still in the store: remove every "
                              "object that no media_files.sha256 references and whose "
                              "last_modified is older than now - grace (aware UTC times: the "
                              f"process ran in {zone}, where a naive now() is local time).")
        lost = [k for k in kept_objects if not store.exists(k)
                or sha256_hex(store.chunks(k)) != kept_sums[k]]
        if lost:
            raise CheckFailed("The sweep removed (or changed) an object that a row references "
                              "or that is inside the grace period: mark first (every sha256 in "
                              "media_files, all of the rows: not only a first batch of them, "
                              "LIMIT or fetchmany), then sweep only what is unmarked and old.",
                              f"{len(lost)} object(s), e.g. {lost[0][:16]}…")
        with psycopg.connect(lab.url, autocommit=True) as conn:
            los_after = _lo_checksums(conn)
            rows_after = {t: query_checksum(conn, _SWEPT_ROWS[t]) for t in MEDIA_TABLES}
        racer.close()
        lost_uploads = [o for o, digest in racer.uploads.items() if los_after.get(o) != digest]
        if lost_uploads:
            raise CheckFailed(
                f"A photo uploaded while your sweep ran (a large object and its media_lo row, "
                f"committed together between two of your sweep's statements) lost its large "
                f"object {lost_uploads[0]}: the row now points at nothing. Your sweep read the "
                "references (media_lo.content) and the list of large objects "
                "(pg_largeobject_metadata) in different snapshots, and an upload that committed "
                "in between looked like an orphan. Find the unreferenced objects in one "
                "statement (SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m WHERE NOT "
                "EXISTS (SELECT 1 FROM media_lo WHERE content = m.oid)), or read both in one "
                "REPEATABLE READ transaction.",
                f"{len(lost_uploads)} of {len(racer.uploads)} uploads made during the sweep")
        for o in racer.uploads:
            los_after.pop(o, None)
        leaked = [o for o in lo_orphans if o in los_after]
        if leaked:
            raise CheckFailed(f"After the sweep, large object {leaked[0]} is still there, "
                              "referenced by no media_lo row: unlink every large object that no "
                              "row references (what vacuumlo does), in a transaction.")
        want_los = {o: s for o, s in los_before.items() if o not in want_unlinked}
        if los_after != want_los:
            raise CheckFailed("The sweep unlinked (or changed) a large object that a media_lo "
                              "row references: only unreferenced ones may go.")
        if rows_after != rows_before:
            changed = [t for t in MEDIA_TABLES if rows_after[t] != rows_before[t]]
            raise CheckFailed(f"The sweep changed rows of {', '.join(changed)}: it may delete "
                              "content, never metadata rows.")
        if not isinstance(report, dict):
            raise CheckFailed(f"{what} returned {type(report).__name__}; return a dict with the "
                              "keys files_removed, rows_missing_content, large_objects_unlinked.")
        try:
            reported_missing = {int(i) for i in report.get("rows_missing_content") or []}
        except (TypeError, ValueError):
            reported_missing = set()
        if late_ids and late_ids[0] in reported_missing:
            raise CheckFailed(
                f"The sweep reported row {late_ids[0]} in rows_missing_content, and its content is "
                "in the store: that upload ran whole after your listing (store.put, then its row "
                "committed), so the listing could not show its content. A report of damage "
                "sends a person to restore or delete the row: ask the store again "
                "(store.exists(key)) before reporting a row whose key the listing lacked.")
        for field, want in [("files_removed", want_removed),
                            ("rows_missing_content", want_missing),
                            ("large_objects_unlinked", want_unlinked)]:
            got = report.get(field)
            try:
                got_sorted = sorted(int(x) if field != "files_removed" else x for x in got)
            except (TypeError, ValueError):
                got_sorted = None
            if got_sorted != want:
                raise CheckFailed(
                    f"The report's {field} is {got!r}; it should list exactly "
                    + {"files_removed": "the keys of the objects removed",
                       "rows_missing_content": "the ids of the media_files rows whose content "
                                               "is missing (reported, not deleted)",
                       "large_objects_unlinked": "the oids of the large objects unlinked"}[field]
                    + ".", f"expected {len(want)} entries")
        # the uploads in flight commit: they read back
        flight.commit()
        for key, data in [(sha256_hex(in_flight), in_flight), (sha256_hex(reused), reused),
                          (sha256_hex(revived), revived)]:
            if store.get(key) != data:
                raise CheckFailed("An upload in flight no longer reads back after its commit.")
        with psycopg.connect(lab.url, autocommit=True) as conn:
            content = conn.execute("SELECT content FROM media_lo WHERE id = %s",
                                   [lo_flight]).fetchone()[0]
            if _lo_checksums(conn).get(int(content)) != hashlib.md5(lo_flight_data).hexdigest():
                raise CheckFailed("A large object written by an upload in flight no longer "
                                  "reads back after its commit.")
    finally:
        if not flight.closed:
            flight.rollback()
            flight.close()
        admin.execute("DELETE FROM media_files WHERE name LIKE ANY(ARRAY['lost_%%', 'kept_%%'])")
        admin.execute("DELETE FROM media_lo WHERE name LIKE 'kept\\_filler\\_%%'")
        admin.execute("SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m WHERE m.oid IN "
                      "(SELECT content FROM media_lo WHERE name LIKE 'sweep\\_race\\_%%')")
        admin.execute("DELETE FROM media_lo WHERE name LIKE 'sweep\\_race\\_%%'")
        admin.close()
    return (f"orphans older than {grace} removed ({len(want_removed)} files, "
            f"{len(want_unlinked)} large objects), uploads in flight kept, "
            f"{len(want_missing)} rows without content reported and kept")


HINTS = {
    "q1": [
        "substring(data FROM start FOR length) on a bytea returns only that slice; with "
        "STORAGE EXTERNAL PostgreSQL reads only the TOAST chunks it covers. Start at 1.",
        "Yield one slice per SELECT, octet_length(data) tells you where to stop; for a "
        "missing row raise KeyError.",
        "Every SELECT in READ COMMITTED sees the newest commit: run them all in one "
        "`with conn.transaction():` whose first statement is SET TRANSACTION ISOLATION LEVEL "
        "REPEATABLE READ.",
    ],
    "q2": [
        "The key is the content's own name: hashlib.sha256(data).hexdigest(). Same bytes, "
        "same key, one object.",
        "Order matters: store.put first, then INSERT the row and commit. A crash in between "
        "leaves an orphan file (the sweep removes it), never a row without content.",
    ],
    "q3": [
        "DELETE … RETURNING content gives you the oid; lo_unlink(oid) removes the object.",
        "Both in one transaction, and unlink only when no other row has the same content "
        "(a re-posted photo shares the object).",
    ],
    "q4": [
        "Mark: every sha256 in media_files, every oid in media_lo. Sweep: objects of the store "
        "not marked, large objects in pg_largeobject_metadata not marked.",
        "An upload in flight has written its content but its row is not visible yet: remove "
        "only objects whose last_modified is older than now - grace.",
        "A row whose content is missing goes into rows_missing_content; the row stays.",
    ],
}
