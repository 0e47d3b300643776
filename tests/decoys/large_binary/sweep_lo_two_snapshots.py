"""vacuumlo's logic in Python: the sweep reads the references (SELECT content FROM media_lo),
then lists the large objects (pg_largeobject_metadata), in two READ COMMITTED statements. A
photo uploaded (large object and row committed together) between the two looks like an orphan
and is unlinked: its committed row points at nothing."""
CHECK = "large_binary.q4"
EXPECT = "different snapshots"
EDIT = {"sweep_orphans": [
    ('''    with conn.transaction():
        report["large_objects_unlinked"] = [oid for oid, _ in conn.execute(
            "SELECT m.oid, lo_unlink(m.oid) FROM pg_largeobject_metadata m "
            "WHERE NOT EXISTS (SELECT 1 FROM media_lo WHERE content = m.oid)")]''',
     '''    with conn.transaction():
        used = {r[0] for r in conn.execute("SELECT content FROM media_lo")}
        for (oid,) in conn.execute("SELECT oid FROM pg_largeobject_metadata").fetchall():
            if oid not in used:
                conn.execute("SELECT lo_unlink(%s)", [oid])
                report["large_objects_unlinked"].append(oid)'''),
]}
