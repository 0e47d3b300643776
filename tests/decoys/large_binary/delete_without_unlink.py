"""Deletes the row and forgets its large object: pg_largeobject keeps the bytes forever,
referenced by nothing."""
CHECK = "large_binary.q3"
EXPECT = "a leak"
REPLACE = {"delete_photo": '''def delete_photo(conn, photo_id):
    with conn.transaction():
        return conn.execute("DELETE FROM media_lo WHERE id = %s", [photo_id]).rowcount == 1
'''}
