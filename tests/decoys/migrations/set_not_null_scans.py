"""SET NOT NULL with no validated CHECK to rely on: a full scan under ACCESS EXCLUSIVE."""
CHECK = "migrations.q3"
EXPECT = 'reads the whole table under it'  # the verdict must give this reason
REPLACE = {"contract_steps": '''contract_steps = [
    "ALTER TABLE users ALTER COLUMN created_at SET NOT NULL",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_created_at_idx ON users (created_at)",
]
'''}
