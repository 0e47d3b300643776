"""After its last attempt it returns instead of raising: when the lock never frees, the
statement never runs and the deploy goes on as if the column existed."""
CHECK = "migrations.q1"
EXPECT = "gave up silently"  # the verdict must give this reason
EDIT = {"run_ddl": [
    ("""                if attempt == attempts:
                    raise""",
     """                if attempt == attempts:
                    return None  # the lock never came: nothing more to do"""),
]}
