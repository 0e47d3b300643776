"""Deletes the photo and, "while at it", unlinks every large object no media_lo row
references: pg_largeobject is database-wide, so objects of other tables, or written by a
client that commits the object before its row, are destroyed by a photo delete."""
CHECK = "large_binary.q3"
EXPECT = "was not the deleted photo"
REPLACE = {"delete_photo": '''def delete_photo(conn, photo_id):
    with conn.transaction():
        deleted = conn.execute("DELETE FROM media_lo WHERE id = %s", [photo_id]).rowcount
        # release whatever no photo uses any more (the deleted one's object included)
        conn.execute("SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m "
                     "WHERE NOT EXISTS (SELECT 1 FROM media_lo WHERE content = m.oid)")
        return deleted == 1
'''}
