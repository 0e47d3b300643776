"""One module per challenge, named after it; one function per exercise (q1, q2, …).

Each function receives the learner's answers, judges them by their effect on the
database (rows, plans, locks, invariants), returns a short success line, and
raises ``labs.checking.CheckFailed`` with a learner-first message otherwise.
"""
