"""Adds the price change but never increments version (the task says it must): caches
and consumers keyed on version never see the change, and the version guard of the
feeds compares against a version that no longer describes the row."""
CHECK = "upserts.q2"
EXPECT = "version went from"
EDIT = {"handle_request": [("SET price = price + %(change)s, version = version + 1,",
                            "SET price = price + %(change)s,")]}
