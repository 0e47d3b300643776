"""Builds the index without CONCURRENTLY: a SHARE lock blocks every write for the whole build."""
CHECK = "migrations.q3"
EXPECT = 'CREATE INDEX CONCURRENTLY'  # the verdict must give this reason
REPLACE = {"contract_steps": '''contract_steps = [
    "ALTER TABLE users ADD CONSTRAINT users_created_at_not_null "
    "CHECK (created_at IS NOT NULL) NOT VALID",
    "ALTER TABLE users VALIDATE CONSTRAINT users_created_at_not_null",
    "ALTER TABLE users ALTER COLUMN created_at SET NOT NULL",
    "ALTER TABLE users DROP CONSTRAINT IF EXISTS users_created_at_not_null",
    "CREATE INDEX users_created_at_idx ON users (created_at)",
]
'''}
