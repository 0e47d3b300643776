"""Versions UPDATEs but not DELETEs: a deleted product's last version vanishes from the past."""
CHECK = "versioned_data.q1"
EXPECT = 'Fire the trigger on DELETE too'  # the verdict must give this reason
EDIT = {"history_sql": [
    ('BEFORE UPDATE OR DELETE ON products',
     'BEFORE UPDATE ON products'),
]}
