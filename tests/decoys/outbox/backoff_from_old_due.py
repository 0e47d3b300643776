"""The backoff is added to the event's old next_attempt_at instead of now(): an event that has
been due for a while (a backlog, a relay that was down) is due again at once after each refusal
and burns all its attempts in a burst against a broker that is refusing it."""
CHECK = "outbox.q2"
EXPECT = "old next_attempt_at"
EDIT = {"relay_batch": [("next_attempt_at = now() + %s * 2 ^ attempts * interval '1 second'",
                         "next_attempt_at = next_attempt_at + %s * 2 ^ attempts * "
                         "interval '1 second'")]}
