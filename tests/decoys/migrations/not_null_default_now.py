"""One ALTER with NOT NULL DEFAULT now(), then SET NOT NULL: instant since PostgreSQL 11, but every
existing user gets the migration's timestamp (the default is evaluated once) and the real sign-up
times are never backfilled."""
CHECK = "migrations.q2"
EXPECT = 'evaluated once, at ALTER time'  # the verdict must give this reason
REPLACE = {"expand_steps": '''expand_steps = [
    "ALTER TABLE users ADD COLUMN created_at timestamptz NOT NULL DEFAULT now()",
    "ALTER TABLE users ALTER COLUMN created_at SET NOT NULL",
]
'''}
