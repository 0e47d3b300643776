"""Reads the value with one SELECT data and slices it in Python: the chunks are right, but the
whole value (and, in libpq, its hex text) is in memory at once, for every download."""
CHECK = "large_binary.q1"
EXPECT = "holds the whole value"
REPLACE = {"stream_media": '''def stream_media(conn, media_id, chunk_size=1 << 16):
    with conn.transaction():
        row = conn.execute("SELECT data FROM media_bytea WHERE id = %s", [media_id]).fetchone()
    if row is None:
        raise KeyError(media_id)
    data = row[0]
    for offset in range(0, len(data), chunk_size):
        yield data[offset:offset + chunk_size]
'''}
