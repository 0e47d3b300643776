"""Checks: one module per challenge, named after it; one function per exercise (q1, q2, …).

The top layer: may import every layer below (runtime, data, tools, course).
Each function receives the learner's answers, judges them by their effect on the
database (rows, plans, locks, invariants), returns a short success line, and
raises ``labs.CheckFailed`` with a learner-first message otherwise.
"""
