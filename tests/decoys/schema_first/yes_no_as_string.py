"""The Y/N flag mapped as a plain CHAR(1) string: `customer.active` is 'N' for a closed
customer, a non-empty string, so `if customer.active:` lets closed customers through."""
CHECK = "schema_first.q1"
EXPECT = "TypeDecorator"  # the verdict must give this reason
EDIT = {"Customer": [
    ('active: Mapped[bool] = mapped_column("ACTV_FLG", YesNo, server_default="Y")',
     'active: Mapped[str] = mapped_column("ACTV_FLG", CHAR(1), server_default="Y")'),
]}
