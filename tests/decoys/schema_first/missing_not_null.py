"""The model leaves out `"tblCUST"."user"` (a reserved word, awkward to map, "we don't use it"):
it is NOT NULL without a default, so every INSERT through the model fails."""
CHECK = "schema_first.q1"
EXPECT = "NOT NULL"  # the verdict must give this reason
EDIT = {"Customer": [
    ('    account_manager: Mapped[str] = mapped_column("user", String(30))\n', ""),
    ("EXCLUDED = {}  # every legacy column is mapped",
     "EXCLUDED = {'\"tblCUST\".\"user\"': 'reserved word, not used by the shop'}"),
]}
