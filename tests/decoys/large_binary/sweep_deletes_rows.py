"""Treats rows whose content is missing as garbage and deletes them, instead of reporting them:
the evidence, and the name a restore from backup needs, are gone."""
CHECK = "large_binary.q4"
EXPECT = "deleted rows whose content is missing"
EDIT = {"sweep_orphans": [
    ("""    # large objects no row references""",
     """    with conn.transaction():
        conn.execute("DELETE FROM media_files WHERE id = ANY(%s)",
                     [report["rows_missing_content"]])
    # large objects no row references"""),
]}
