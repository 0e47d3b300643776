"""Opens the REPEATABLE READ transaction by hand and commits after the last chunk: a download
the client abandons (generator closed or dropped mid-stream) never reaches the COMMIT, and the
connection stays idle in transaction holding its snapshot."""
CHECK = "large_binary.q1"
EXPECT = "abandoned"
REPLACE = {"stream_media": '''def stream_media(conn, media_id, chunk_size=1 << 16):
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    row = conn.execute("SELECT octet_length(data) FROM media_bytea WHERE id = %s",
                       [media_id]).fetchone()
    if row is None:
        conn.rollback()
        raise KeyError(media_id)
    for offset in range(0, row[0], chunk_size):
        yield conn.execute("SELECT substring(data FROM %s FOR %s) FROM media_bytea "
                           "WHERE id = %s", [offset + 1, chunk_size, media_id]).fetchone()[0]
    conn.commit()
'''}
