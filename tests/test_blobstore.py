"""The file store and the seeded media of labs.tools.blobstore (no database needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from labs.tools.blobstore import FileStore, corpus, large_item, sha256_hex


def test_put_get_and_chunks_round_trip(tmp_path):
    """An object reads back whole and in chunks, the last chunk shorter."""
    store = FileStore(tmp_path)
    data = bytes(range(256)) * 41
    key = sha256_hex(data)
    assert store.put(key, data) == len(data)
    assert store.get(key) == data
    parts = list(store.chunks(key, 1000))
    assert b"".join(parts) == data and all(len(p) == 1000 for p in parts[:-1])
    assert store.stat(key).size == len(data)


def test_put_accepts_an_iterable_of_chunks(tmp_path):
    """put() streams an iterable of chunks into one object."""
    store = FileStore(tmp_path)
    assert store.put("abc", iter([b"ab", b"", b"c"])) == 3
    assert store.get("abc") == b"abc"


def test_put_of_an_existing_key_keeps_the_bytes_and_refreshes_the_age(tmp_path):
    """A second put of a key leaves its bytes and makes it young again (the sweep's grace)."""
    store = FileStore(tmp_path)
    store.put("k1", b"first")
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    store.set_modified("k1", old)
    assert store.stat("k1").last_modified < old + dt.timedelta(seconds=1)
    store.put("k1", b"other bytes")
    assert store.get("k1") == b"first"
    assert store.stat("k1").last_modified > old + dt.timedelta(days=2)


def test_delete_list_and_missing_keys(tmp_path):
    """delete() says whether there was an object; list() is sorted; a missing key is a KeyError."""
    store = FileStore(tmp_path)
    for key in ("bb", "aa", "ab"):
        store.put(key, key.encode())
    assert [o.key for o in store.list()] == ["aa", "ab", "bb"]
    assert store.delete("ab") is True and store.delete("ab") is False
    assert store.stat("ab") is None and not store.exists("ab")
    with pytest.raises(KeyError):
        store.get("ab")
    with pytest.raises(KeyError):
        next(store.chunks("ab"))
    store.clear()
    assert store.count() == 0


def test_keys_that_would_leave_the_store_are_refused(tmp_path):
    """Keys are plain names: no path separators, no '..'."""
    store = FileStore(tmp_path)
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            store.put(bad, b"x")


def test_corpus_is_deterministic_and_covers_the_size_classes():
    """The tiny corpus is the same on every call and has PNG, JPEG and documents of every class."""
    first, second = corpus("tiny"), corpus("tiny")
    assert [i.sha256 for i in first] == [i.sha256 for i in second]
    classes = {(i.size_class, i.media_type) for i in first}
    for size_class in ("small", "medium", "large"):
        assert {(size_class, "image/png"), (size_class, "image/jpeg")} <= classes
    assert any(i.size_class == "document" for i in first)
    assert first[0].data[:8] == b"\x89PNG\r\n\x1a\n" and first[1].data[:2] == b"\xff\xd8"
    assert 8_000 < min(i.size for i in first if i.media_type == "image/png") < 20_000


def test_large_item_is_sized_by_scale():
    """The streaming item is 6 MB at tiny (50 MB at small)."""
    assert large_item("tiny").size == 6 << 20
