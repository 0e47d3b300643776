"""ORD_LN's foreign key mapped on "ORD_NO" alone (a ForeignKey on the order number, no composite
constraint): order numbers repeat across customers, so Order.lines joins on the number only and
hands an order the lines of every other customer's order with that number."""
CHECK = "schema_first.q1"
EXPECT = "composite foreign key"  # the verdict must give this reason
EDIT = {"Customer": [
    ('''    __table_args__ = (ForeignKeyConstraint(["CUST_ID", "ORD_NO"],
                                           ["ORD_HDR.CUST_ID", "ORD_HDR.ORD_NO"]),)
''', ""),
    ('order_number: Mapped[int] = mapped_column("ORD_NO", Integer, primary_key=True)',
     'order_number: Mapped[int] = mapped_column("ORD_NO", Integer, ForeignKey("ORD_HDR.ORD_NO"),\n'
     '                                              primary_key=True)'),
]}
