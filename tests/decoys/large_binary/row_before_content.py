"""Commits the metadata row first and writes the content afterwards: a crash between the two
leaves a committed row pointing at content that was never stored."""
CHECK = "large_binary.q2"
EXPECT = "dangling reference"
REPLACE = {"upload": '''import hashlib


def upload(conn, store, name, media_type, data):
    key = hashlib.sha256(data).hexdigest()
    with conn.transaction():
        media_id = conn.execute(
            "INSERT INTO media_files (name, media_type, size, sha256) VALUES (%s, %s, %s, %s) "
            "RETURNING id", [name, media_type, len(data), key]).fetchone()[0]
    store.put(key, data)
    return media_id
'''}
