"""idle_in_transaction_session_timeout = 2 read as seconds: a number without a unit is
milliseconds, so every transaction of the role that pauses 2 ms between statements (any
client-side work) is killed."""
CHECK = "mvcc_bloat.q3"
EXPECT = "paused 250 ms"
EDIT = {"role_timeouts_sql": [("idle_in_transaction_session_timeout = '2s'",
                               "idle_in_transaction_session_timeout = 2")]}
