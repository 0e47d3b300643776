"""Explains one squawk rule in one word and leaves the other findings unexplained."""
CHECK = "migrations.q5"
EXPECT = 'which squawk_explained does not explain'  # the verdict must give this reason
REPLACE = {"squawk_explained": '''squawk_explained = {"prefer-robust-stmts": "fine"}
'''}
