"""The contract's downgrade drops the index without CONCURRENTLY (ACCESS EXCLUSIVE on users,
squawk's require-concurrent-index-deletion), behind a leading SQL comment: the lint script joins
each statement's lines, so the comment swallows the whole statement and squawk never sees it."""
CHECK = "migrations.q5"
EXPECT = "require-concurrent-index-deletion"
REPLACE = {"downgrade_steps": '''downgrade_steps = {
    "contract": ["-- undo 0003: the index first\\nDROP INDEX IF EXISTS users_created_at_idx",
                 "ALTER TABLE users ALTER COLUMN created_at DROP NOT NULL"],
    "expand": ["ALTER TABLE users DROP COLUMN IF EXISTS created_at"],
}
'''}
