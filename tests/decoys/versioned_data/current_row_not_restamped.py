"""Closes the old period at t but leaves the new row's updated_at as it was: history and current row overlap."""
CHECK = "versioned_data.q1"
EXPECT = 'the periods have a'  # the verdict must give this reason
EDIT = {"history_sql": [
    ('    NEW.updated_at := t;\n',
     ''),
]}
