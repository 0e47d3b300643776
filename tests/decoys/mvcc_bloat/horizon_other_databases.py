"""Lists the sessions of every database (no datname filter): a snapshot held in another database
does not stop VACUUM here, so the on-call engineer is sent to end the wrong session."""
CHECK = "mvcc_bloat.q2"
EXPECT = "another database"
EDIT = {"find_horizon_holders": [
    ("WHERE datname = current_database() AND pid <> pg_backend_pid()", "WHERE pid <> pg_backend_pid()")]}
