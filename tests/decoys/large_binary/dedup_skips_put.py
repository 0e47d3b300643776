"""Skips the store's put when the content is already there ("dedup: don't upload it twice"):
the re-used object's last-modified time is not refreshed, so an old orphan re-used by this
upload is swept (older than the grace period, row not committed yet) and the new row dangles."""
CHECK = "large_binary.q2"
EXPECT = "refreshes the last-modified"
REPLACE = {"upload": '''import hashlib


def upload(conn, store, name, media_type, data):
    key = hashlib.sha256(data).hexdigest()
    if not store.exists(key):          # deduplicated: the bytes are stored once
        store.put(key, data)
    with conn.transaction():
        return conn.execute(
            "INSERT INTO media_files (name, media_type, size, sha256) VALUES (%s, %s, %s, %s) "
            "RETURNING id", [name, media_type, len(data), key]).fetchone()[0]
'''}
