"""Deduplicates by file name: an upload whose name is already known re-uses that row's content,
so the second phone's IMG_0001.JPG shows the first phone's photo."""
CHECK = "large_binary.q2"
EXPECT = "Deduplicate by content"
REPLACE = {"upload": '''import hashlib


def upload(conn, store, name, media_type, data):
    with conn.transaction():
        known = conn.execute("SELECT sha256 FROM media_files WHERE name = %s LIMIT 1",
                             [name]).fetchone()
    if known:  # "we already have this file"
        key = known[0]
    else:
        key = hashlib.sha256(data).hexdigest()
        store.put(key, data)
    with conn.transaction():
        return conn.execute(
            "INSERT INTO media_files (name, media_type, size, sha256) VALUES (%s, %s, %s, %s) "
            "RETURNING id", [name, media_type, len(data), key]).fetchone()[0]
'''}
