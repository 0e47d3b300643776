"""Sweeps every unreferenced object at once, with no grace period: an upload whose content is
written but whose row is not committed yet loses its content, and its row then points at nothing."""
CHECK = "large_binary.q4"
EXPECT = "upload in flight"
EDIT = {"sweep_orphans": [
    ("if obj.key not in referenced and obj.last_modified < cutoff:",
     "if obj.key not in referenced:"),
    ("if now is not None and now.last_modified < cutoff and store.delete(obj.key):",
     "if store.delete(obj.key):"),
]}
