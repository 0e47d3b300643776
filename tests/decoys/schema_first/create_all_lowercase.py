"""The classic slide: the model says `tblcust` (the name as one types it without quotes), the
first query fails with "relation tblcust does not exist", so start-up calls
`Base.metadata.create_all()`, which creates an empty look-alike `tblcust` and the application
"works" against it. Any DDL from the application is the failure, whatever it creates."""
CHECK = "schema_first.q1"
EXPECT = "create_all"  # the verdict must give this reason
EDIT = {"Customer": [
    ('__tablename__ = "tblCUST"', '__tablename__ = "tblcust"'),
    ('ForeignKey("tblCUST.CUST_ID")', 'ForeignKey("tblcust.CUST_ID")'),
    ("EXCLUDED = {}  # every legacy column is mapped",
     "EXCLUDED = {}\nBase.metadata.create_all(lab.engine)  # \"the table was missing\""),
]}
