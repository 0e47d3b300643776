"""One entry per column (a dict keyed by table and name): a column whose type is widened and
whose NOT NULL is dropped in the same DBA migration is reported once, the other change lost."""
CHECK = "schema_first.q3"
EXPECT = "changed that column twice"
EDIT = {"detect_drift": [
    ("    return [(diff[0], *_describe(diff)) for diff in _flat(diffs) if diff[0] not in COMMENT_DIFFS]",
     "    seen = {}\n"
     "    for diff in _flat(diffs):\n"
     "        if diff[0] not in COMMENT_DIFFS:\n"
     "            table, name, sentence = _describe(diff)\n"
     "            seen.setdefault((table, name), (diff[0], table, name, sentence))\n"
     "    return list(seen.values())"),
]}
