"""A refused event is retried after `backoff` seconds every time, never further away: a broker
that is down gets the same retry rate from every refused event for as long as it is down."""
CHECK = "outbox.q2"
EXPECT = "backoff does not grow"
EDIT = {"relay_batch": [("next_attempt_at = now() + %s * 2 ^ attempts * interval '1 second'",
                         "next_attempt_at = now() + %s * interval '1 second'")]}
