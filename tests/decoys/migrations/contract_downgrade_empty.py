"""The contract's downgrade does nothing ("dropping the column undoes everything"): alembic
downgrade 0002 (rolling back only the contract) leaves NOT NULL and the index in place."""
CHECK = "migrations.q4"
EXPECT = "(rolling back only 0003_contract) does not restore"  # the verdict must give this reason
REPLACE = {"downgrade_steps": '''downgrade_steps = {
    "contract": [],
    "expand": ["ALTER TABLE users DROP COLUMN IF EXISTS created_at"],
}
'''}
