"""A drift detector that turns off type comparison and drops nullability differences ("too
noisy"): the widened varchar and the dropped NOT NULL go unreported until an INSERT or a NULL
surprises the application."""
CHECK = "schema_first.q3"
EXPECT = "ignores a type or a nullability"  # the verdict must give this reason
EDIT = {"detect_drift": [
    ('"compare_type": True', '"compare_type": False'),
    ("if diff[0] not in COMMENT_DIFFS]", 'if diff[0] not in COMMENT_DIFFS | {"modify_nullable"}]'),
]}
