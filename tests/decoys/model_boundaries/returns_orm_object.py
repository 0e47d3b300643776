"""The service function hands out the ORM instance itself ("the framework will serialise it"):
every mapped column, password_hash included, reaches the caller, and reading it after the
session closed raises DetachedInstanceError."""
CHECK = "model_boundaries.q2"
EXPECT = "ORM instance"  # the verdict must give this reason
EDIT = {"get_customer_profile": [
    ("    return CustomerOut.model_validate(customer)", "    return customer"),
]}
