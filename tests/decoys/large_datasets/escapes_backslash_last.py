"""copy_line escapes tab, newline and carriage return first and the backslash last, so it
doubles the backslash of its own escapes: a tab arrives as the two characters backslash and
't', a newline as backslash and 'n'. Every row loads, some with other values."""
CHECK = "large_datasets.q1"
EXPECT = "some values differ"  # the verdict must give this reason
EDIT = {"copy_line": [
    ('fields.append(text.replace("\\\\", "\\\\\\\\").replace("\\t", "\\\\t")\n'
     '                      .replace("\\n", "\\\\n").replace("\\r", "\\\\r"))',
     'fields.append(text.replace("\\t", "\\\\t").replace("\\n", "\\\\n")\n'
     '                      .replace("\\r", "\\\\r").replace("\\\\", "\\\\\\\\"))'),
]}
