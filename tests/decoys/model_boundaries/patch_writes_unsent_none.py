"""The PATCH copies `patch.model_dump()`, defaults included: every field the body did not send
is written as None (a NOT NULL column refuses it with a 500, a nullable one is wiped)."""
CHECK = "model_boundaries.q3"
EXPECT = "did not send"  # the verdict must give this reason
EDIT = {"patch_customer": [
    ("patch.model_dump(exclude_unset=True)", "patch.model_dump()"),
]}
