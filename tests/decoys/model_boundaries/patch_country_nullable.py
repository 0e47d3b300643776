"""Declares every PATCH field as `X | None` ("optional") and only full_name as non-null:
{"country": null} passes the DTO and reaches the char(2) NOT NULL column, a 500 (an
IntegrityError) instead of a 422 naming the field."""
CHECK = "model_boundaries.q3"
EXPECT = "country is NOT NULL"
EDIT = {"CustomerPatch": [
    ("country: str = Field(None, min_length=2, max_length=2)",
     "country: str | None = Field(None, min_length=2, max_length=2)"),
]}
