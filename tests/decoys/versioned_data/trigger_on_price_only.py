"""Versions only price changes (UPDATE OF price): a rename, a new SKU or a soft delete overwrites the past."""
CHECK = "versioned_data.q1"
EXPECT = ('whatever column it changes', 'changed no column the history keeps')  # the verdict must give this reason
EDIT = {"history_sql": [
    ('BEFORE UPDATE OR DELETE ON products',
     'BEFORE UPDATE OF price OR DELETE ON products'),
]}
