"""The downgrade forgets the index and the NOT NULL; dropping the column hides that, so the
expand downgrade only drops the default: the catalogue after downgrade differs from before."""
CHECK = "migrations.q4"
EXPECT = 'does not restore the schema'  # the verdict must give this reason
REPLACE = {"downgrade_steps": '''downgrade_steps = {
    "contract": [],
    "expand": ["ALTER TABLE users ALTER COLUMN created_at DROP DEFAULT"],
}
'''}
