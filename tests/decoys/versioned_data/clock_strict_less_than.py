"""Keeps now() and falls back to clock_timestamp() only when now() is BEFORE the version it
replaces (`IF t < OLD.updated_at`): right for a transaction that started before a concurrent
change, wrong at the boundary. A transaction that changes one product twice has now() =
OLD.updated_at at its second change and writes the empty period [now(), now()): the first
change's price was valid at no instant, and no AS OF query ever finds it."""
CHECK = "versioned_data.q3"
EXPECT = "changed a product's price twice in one transaction"
EDIT = {"clock_sql": [("    t timestamptz := greatest(now(), OLD.updated_at + interval '1 microsecond');\nBEGIN\n",
                       "    t timestamptz := now();\nBEGIN\n    IF t < OLD.updated_at THEN\n        t := clock_timestamp();\n    END IF;\n")]}
