"""Explains one squawk rule in one word and leaves the other findings unexplained."""
CHECK = "migrations.q5"
REPLACE = {"squawk_explained": '''squawk_explained = {"prefer-robust-stmts": "fine"}
'''}
