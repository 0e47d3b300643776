"""Sessions of the caller's own user only (`usename = current_user`, copied from a "my
sessions" query): the forgotten BEGIN in the reporting role's psql window belongs to another
user, holds the horizon all the same, and is missed."""
CHECK = "mvcc_bloat.q2"
EXPECT = "another user"
EDIT = {"find_horizon_holders": [
    ("WHERE datname = current_database() AND pid <> pg_backend_pid()",
     "WHERE datname = current_database() AND pid <> pg_backend_pid() AND usename = current_user")]}
