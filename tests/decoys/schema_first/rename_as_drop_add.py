"""Autogenerate's migration accepted unreviewed: the rename comes out as DROP COLUMN + ADD
COLUMN, and every stored gift flag is lost (with the constraint and the comment)."""
CHECK = "schema_first.q4"
EXPECT = "loses data"  # the verdict must give this reason
REPLACE = {"rename_sql": '''
rename_sql = """
ALTER TABLE "ORD_HDR" ADD COLUMN "GIFT_IND" CHAR(1);
ALTER TABLE "ORD_HDR" DROP COLUMN "GIFT_FLG";
"""
'''}
