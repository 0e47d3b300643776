"""labs.tools.migrations_probe: reading PostgreSQL's DEBUG1 messages into scan/rewrite evidence.

The messages are PostgreSQL's own (src/backend/catalog/index.c, commands/tablecmds.c); the
wording of an index build depends on the table's size, so both forms are covered: a
10-million-row table gets parallel workers, and the probe once called that build
"catalogue only".
"""

from __future__ import annotations

import pytest

from labs.tools.migrations_probe import StepEvidence, _classify


@pytest.mark.parametrize("message, scanned", [
    ('building index "users_nickname_idx" on table "users" serially', True),
    ('building index "users_nickname_idx" on table "users" with request for 2 parallel workers',
     True),
    ('building index "users_archive_idx" on table "users_archive" serially', False),
    ('verifying table "users"', True),
    ('index "users_nickname_idx" can safely use deduplication', False),
])
def test_scans_are_recognised_whatever_the_table_size(message, scanned):
    ev = StepEvidence("CREATE INDEX …", messages=[message])
    _classify(ev, "users")
    assert ev.scanned is scanned


def test_rewrite_and_proof_from_check():
    ev = StepEvidence("ALTER TABLE …", messages=['rewriting table "users"'])
    _classify(ev, "users")
    assert ev.rewrote and not ev.scanned
    ev = StepEvidence("ALTER TABLE … SET NOT NULL", messages=[
        'existing constraints on column "users.nickname" are sufficient to prove that it does '
        'not contain nulls'])
    _classify(ev, "users")
    assert ev.proved_not_null and not ev.scanned
