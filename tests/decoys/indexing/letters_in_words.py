"""Believes D cannot use the index because status is skipped, and says so in words: the A and D
of "and" are not queries A and D."""
CHECK = "indexing.q2"
EXPECT = "D can: customer_id is the leading column"  # the verdict must give this reason
REPLACE = {"usable": '''usable = "A, B and F"'''}
