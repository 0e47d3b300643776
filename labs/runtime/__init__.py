"""Runtime: where PostgreSQL comes from (configuration, the server the lab finds or starts, errors).

The lowest layer: it imports nothing else from ``labs``.
"""
