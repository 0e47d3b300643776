"""Believes any query naming an indexed column can use the composite index (C, E included)."""
CHECK = "indexing.q2"
REPLACE = {"usable": '''usable = {"A", "B", "C", "D", "E", "F"}'''}
