"""On a failed INSERT the upload deletes the content it just put, when no committed row
references it ("don't leave orphans"): another upload of the same bytes in flight (content
put, row inserted and not committed) loses its content, and its row dangles once it commits."""
CHECK = "large_binary.q2"
EXPECT = "another upload of the same bytes was in flight"
REPLACE = {"upload": '''import hashlib


def upload(conn, store, name, media_type, data):
    key = hashlib.sha256(data).hexdigest()
    store.put(key, data)
    try:
        with conn.transaction():
            return conn.execute(
                "INSERT INTO media_files (name, media_type, size, sha256) VALUES (%s, %s, %s, %s) "
                "RETURNING id", [name, media_type, len(data), key]).fetchone()[0]
    except Exception:
        # clean up after ourselves, unless another (committed) row uses the same content
        with conn.transaction():
            used = conn.execute("SELECT 1 FROM media_files WHERE sha256 = %s LIMIT 1",
                                [key]).fetchone()
        if used is None:
            store.delete(key)
        raise
'''}
