"""The rename as expand/contract in one script: add GIFT_IND, copy every flag with an UPDATE,
re-create the check constraint and the comment, drop GIFT_FLG. The values survive, but every row
of the table is rewritten under ACCESS EXCLUSIVE (hours on a big table) and the column moves
to the end; RENAME COLUMN is a catalogue change."""
CHECK = "schema_first.q4"
EXPECT = "rewrote every row"
REPLACE = {"rename_sql": '''
rename_sql = """
ALTER TABLE "ORD_HDR" ADD COLUMN "GIFT_IND" CHAR(1);
UPDATE "ORD_HDR" SET "GIFT_IND" = "GIFT_FLG";
ALTER TABLE "ORD_HDR" ADD CONSTRAINT "CK_ORD_HDR_GIFT_IND" CHECK ("GIFT_IND" IN ('Y', 'N'));
COMMENT ON COLUMN "ORD_HDR"."GIFT_IND" IS 'Y = gift wrap, N = none, NULL = not asked';
ALTER TABLE "ORD_HDR" DROP COLUMN "GIFT_FLG";
"""
'''}
