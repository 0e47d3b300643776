"""The mark reads only the first batch of references (fetchmany(1000)): right on a test store
of thirty uploads; on a real one every object referenced by a later row looks unreferenced,
and the old ones are deleted under their rows."""
CHECK = "large_binary.q4"
EXPECT = "not only a first batch"
EDIT = {"sweep_orphans": [
    ('rows = conn.execute("SELECT id, sha256 FROM media_files ORDER BY id").fetchall()',
     'rows = conn.execute("SELECT id, sha256 FROM media_files ORDER BY id").fetchmany(1000)'),
]}
