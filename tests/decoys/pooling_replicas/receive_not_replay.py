"""caught_up compares with pg_last_wal_receive_lsn(): WAL the replica has received is not yet
applied (recovery_min_apply_delay, a long replay), so the router trusts a replica that does not
show the write yet."""
CHECK = "pooling_replicas.q3"
EXPECT = ("received", "stale read")
EDIT = {"caught_up": [("pg_last_wal_replay_lsn() >= %s::pg_lsn",
                       "pg_last_wal_receive_lsn() >= %s::pg_lsn")]}
