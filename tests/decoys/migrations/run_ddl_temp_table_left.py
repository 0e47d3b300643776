"""Logs each attempt into a temporary table on the caller's connection: left behind in its session."""
CHECK = "migrations.q1"
EXPECT = "temporary table"
EDIT = {"run_ddl": [("    try:\n        for attempt", "    conn.execute(\"CREATE TEMP TABLE IF NOT EXISTS ddl_attempts (at timestamptz DEFAULT clock_timestamp(), statement text)\")\n    try:\n        for attempt"),
                    ("                conn.execute(statement)\n", "                conn.execute(\"INSERT INTO ddl_attempts (statement) VALUES (%s)\", [statement])\n                conn.execute(statement)\n")]}
