"""`"ORD_LN"."UNIT_PRC"` (numeric(10,2)) mapped as Float ("a price is a number"): every price
comes back as a binary fraction, so sums and comparisons of money drift by cents."""
CHECK = "schema_first.q1"
EXPECT = "Numeric(10, 2)"  # the verdict must give this reason
EDIT = {"Customer": [
    ('unit_price: Mapped[Decimal] = mapped_column("UNIT_PRC", Numeric(10, 2))',
     'unit_price: Mapped[float] = mapped_column("UNIT_PRC", __import__("sqlalchemy").Float)')]}
