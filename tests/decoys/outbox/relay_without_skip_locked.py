"""The relay locks its batch with a plain FOR UPDATE: a second worker asking for the oldest
pending events waits for the first worker's transaction instead of taking the next ones, so
any number of workers publish one batch at a time. The check holds worker A inside its first
publish and sees worker B waiting in the lock manager."""
CHECK = "outbox.q2"
EXPECT = "relay workers serialise"
EDIT = {"relay_batch": [("FOR UPDATE SKIP LOCKED", "FOR UPDATE")]}
