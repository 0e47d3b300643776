"""The relay tool: the outbox schema, the consumer database, the broker's fault hooks, workers."""

import psycopg
import pytest
from psycopg.rows import dict_row

from labs.course.challenge import drop, setup
from labs.tools import relay


@pytest.fixture(scope="module")
def lab():
    lab = setup("relay_tool", sql_magic=False)
    relay.install(lab)
    yield lab
    lab.reset()          # runs the on_reset undo: the consumer database goes
    lab.close()
    drop("relay_tool")


def _record(conn, event):
    with conn.transaction():
        conn.execute("INSERT INTO processed_events (event_id, event_type) VALUES (%s, %s) "
                     "ON CONFLICT DO NOTHING", [event["id"], event["event_type"]])


def _relay(conn, publish, batch_size=4):
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        events = cur.execute("SELECT id, aggregate_id, event_type, payload FROM outbox "
                             "WHERE status = 'pending' ORDER BY id LIMIT %s "
                             "FOR UPDATE SKIP LOCKED", [batch_size]).fetchall()
        for event in events:
            publish(event)
        cur.execute("UPDATE outbox SET status = 'sent' WHERE id = ANY(%s)",
                    [[e["id"] for e in events]])
    return len(events)


def _events(lab, n):
    relay.clear(lab)
    lab.execute("INSERT INTO outbox (aggregate_id, event_type, payload) "
                "SELECT g, 'order_created', '{}' FROM generate_series(1, %s) g", [n])


def test_consumer_database_is_scoped_and_dropped_on_reset(lab):
    """The consumer database is named after the challenge database and registered for reset."""
    assert relay.consumer_dbname(lab) == f"{lab.dbname}_consumer"
    with psycopg.connect(relay.consumer_url(lab)) as conn:
        assert conn.execute("SELECT count(*) FROM customer_stats").fetchone()[0] == 0
    assert any(isinstance(u, relay._Undo) for u in lab._on_reset)


def test_kills_leave_events_pending_and_a_resumed_worker_finishes(lab):
    """A worker killed after a publish, and one killed mid-batch, lose nothing: resume sends all."""
    _events(lab, 30)
    broker = relay.Broker(relay.consumer_url(lab), _record, kill_after={3}, kill_before={9})
    run = relay.run_workers(lab.url, _relay, broker, workers=2)
    assert len(broker.kills) == 2 and len(run.errors) == 2
    relay.run_workers(lab.url, _relay, broker, workers=1, prefix="R")
    broker.close()
    assert relay.pending(lab) == 0
    assert {d.event_id for d in broker.deliveries} == set(range(1, 31))
    assert len(broker.deliveries) > 30          # the killed batches were delivered again


def test_notify_arrives_only_at_commit(lab):
    """wait_for_events times out while the inserting transaction is open, and wakes on COMMIT."""
    with lab.connect(autocommit=True) as listener, lab.connect() as writer:
        relay.wait_for_events(listener, timeout=0.01)
        writer.execute("INSERT INTO outbox (aggregate_id, event_type, payload) "
                       "VALUES (1, 'ping', '{}')")
        assert relay.wait_for_events(listener, timeout=0.2) == "timeout"
        writer.commit()
        assert relay.wait_for_events(listener, timeout=5) == "notified"
