"""The DTO carries password_hash and is_admin "for the auth code", marked Field(exclude=True) so
JSON leaves them out: the API's type still holds the secret (profile.password_hash, vars(profile),
a pickled cache entry, a log line of repr/__dict__)."""
CHECK = "model_boundaries.q2"
EXPECT = "left out of the JSON"
EDIT = {"CustomerOut": [
    ("    created_at: dt.datetime\n\n",
     "    created_at: dt.datetime\n"
     "    password_hash: str = Field(exclude=True, repr=False)  # for the auth code only\n"
     "    is_admin: bool = Field(exclude=True, repr=False)\n\n"),
]}
