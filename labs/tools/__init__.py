"""Tools: what a notebook works with (sessions, stress, workload, EXPLAIN plots, the migration probe, Alembic).

May import ``labs.runtime`` and ``labs.data``.
"""
