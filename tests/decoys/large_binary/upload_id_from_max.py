"""Inserts the row, then asks SELECT max(id) for its id: another upload committed meanwhile
has the highest id, and this upload returns (and links to) someone else's photo."""
CHECK = "large_binary.q2"
EXPECT = "ANOTHER user's upload"
REPLACE = {"upload": '''import hashlib


def upload(conn, store, name, media_type, data):
    key = hashlib.sha256(data).hexdigest()
    store.put(key, data)
    with conn.transaction():
        conn.execute("INSERT INTO media_files (name, media_type, size, sha256) "
                     "VALUES (%s, %s, %s, %s)", [name, media_type, len(data), key])
        return conn.execute("SELECT max(id) FROM media_files").fetchone()[0]
'''}
