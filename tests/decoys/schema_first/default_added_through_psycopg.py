"""`"user"` left out of the model, and the NOT NULL error "fixed" by giving the DBA's column a
default, sent through psycopg (lab.execute), which the SQLAlchemy DDL watcher does not hear: the
application changed a schema it does not own, for every other application that uses it."""
CHECK = "schema_first.q1"
EXPECT = "no longer as the DBA built them"  # the verdict must give this reason
EDIT = {"Customer": [
    ('    account_manager: Mapped[str] = mapped_column("user", String(30))\n', ""),
    ("EXCLUDED = {}  # every legacy column is mapped",
     "lab.execute('ALTER TABLE \"tblCUST\" ALTER COLUMN \"user\" SET DEFAULT current_user')\n"
     "EXCLUDED = {'\"tblCUST\".\"user\"': 'has a default now; the shop does not use it'}"),
]}
