"""The store's hand-written SQL: the statements that `unnest` parallel arrays.

SQLAlchemy Core builds the simple statements where they are used; these few
are text because one round trip must serve any number of runs (the flush
loop's cost grows with flushes, not with events). Nothing here runs anything.
"""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, INTEGER, TEXT, UUID

from broker.store.notify import CANCEL_CHANNEL, NOTIFY_CHANNEL, PAYLOAD_TEMPLATE
from models.tables import Integration, Message, RawStreamEvent, Run, Thread, Workspace

__all__ = [
    "CANCEL_NOTIFY",
    "FLUSH",
    "INSERT_EVENTS",
    "NOTIFY",
    "READ_EVENTS_MANY",
    "events",
    "integrations",
    "messages",
    "runs",
    "threads",
    "workspaces",
]

runs = cast(sa.Table, Run.__table__)
threads = cast(sa.Table, Thread.__table__)
workspaces = cast(sa.Table, Workspace.__table__)
events = cast(sa.Table, RawStreamEvent.__table__)
messages = cast(sa.Table, Message.__table__)
integrations = cast(sa.Table, Integration.__table__)

INSERT_EVENTS = sa.text(
    "INSERT INTO raw_stream_events (run_id, seq, key_id, payload) "
    "SELECT * FROM unnest(:run_ids, :seqs, :key_ids, :payloads) "
    "ON CONFLICT (run_id, seq) DO NOTHING"
).bindparams(
    sa.bindparam("run_ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("seqs", type_=ARRAY(INTEGER)),
    sa.bindparam("key_ids", type_=ARRAY(TEXT)),
    sa.bindparam("payloads", type_=ARRAY(BYTEA)),
)


NOTIFY = sa.text(
    "SELECT pg_notify(:channel, payload) FROM unnest(:payloads) AS payload"
).bindparams(sa.bindparam("payloads", type_=ARRAY(TEXT)), channel=NOTIFY_CHANNEL)
"""One wake-up per payload, sent on commit (payloads from `broker.store.notify`)."""

CANCEL_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)").bindparams(channel=CANCEL_CHANNEL)
"""The cancel wake-up of one run, sent on commit (payload from `broker.store.notify`)."""


# One round trip for any number of runs: fence and renew the leases (the runs this
# writer still owns come back), insert only those runs' events, finish the runs
# whose terminal event is in the batch, and NOTIFY each run that got events. Every
# sub-statement sees the same snapshot; `fenced`'s RETURNING is how the insert
# learns which runs passed the fence. It also returns who asked to cancel each run
# (NULL: nobody): the poll behind the cancel NOTIFY, at no extra round trip.
FLUSH = sa.text(
    """
WITH batch AS (
    SELECT * FROM unnest(
        :run_ids, :last_seqs, :agent_event_ids, :statuses, :errors, :error_types, :aborted_bys
    ) AS b(id, last_seq, agent_event_id, status, error, error_type, aborted_by)
),
fenced AS (
    UPDATE runs SET
        last_seq = greatest(runs.last_seq, b.last_seq),
        agent_cursor = coalesce(b.agent_event_id, runs.agent_cursor),
        status = coalesce(b.status, runs.status),
        finished_at = CASE WHEN b.status IS NULL THEN runs.finished_at ELSE now() END,
        error = coalesce(b.error, runs.error),
        error_type = coalesce(b.error_type, runs.error_type),
        aborted_by = coalesce(runs.aborted_by, b.aborted_by),
        writer_id = CASE WHEN b.status IS NULL THEN runs.writer_id END,
        lease_expires_at = CASE
            WHEN b.status IS NULL THEN now() + make_interval(secs => :lease_s)
        END
    FROM batch AS b
    WHERE runs.id = b.id AND runs.writer_id = :writer_id AND runs.status = 'streaming'
    RETURNING runs.id, runs.last_seq, b.last_seq > 0 AS wrote,
        CASE WHEN runs.abort_requested_at IS NOT NULL THEN coalesce(runs.aborted_by, '') END
            AS cancel_by
),
inserted AS (
    INSERT INTO raw_stream_events (run_id, seq, key_id, payload)
    SELECT e.run_id, e.seq, e.key_id, e.payload
    FROM unnest(:event_run_ids, :seqs, :key_ids, :payloads) AS e(run_id, seq, key_id, payload)
    WHERE e.run_id IN (SELECT id FROM fenced)
    ON CONFLICT (run_id, seq) DO NOTHING
)
SELECT id, cancel_by,
    CASE WHEN wrote THEN pg_notify(:channel, format(:template, id, last_seq)) END AS notified
FROM fenced
"""
).bindparams(
    sa.bindparam("run_ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("last_seqs", type_=ARRAY(INTEGER)),
    sa.bindparam("agent_event_ids", type_=ARRAY(TEXT)),
    sa.bindparam("statuses", type_=ARRAY(TEXT)),
    sa.bindparam("errors", type_=ARRAY(TEXT)),
    sa.bindparam("error_types", type_=ARRAY(TEXT)),
    sa.bindparam("aborted_bys", type_=ARRAY(TEXT)),
    sa.bindparam("lease_s", type_=sa.Float),
    sa.bindparam("event_run_ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("seqs", type_=ARRAY(INTEGER)),
    sa.bindparam("key_ids", type_=ARRAY(TEXT)),
    sa.bindparam("payloads", type_=ARRAY(BYTEA)),
    channel=NOTIFY_CHANNEL,
    template=PAYLOAD_TEMPLATE,
)


# One statement for any number of tailed runs: each run's next rows by the primary
# key, so a sweep of a thousand idle runs costs about one index probe each. Each
# run's page is bounded by rows (`limit`) and by stored bytes (`max_bytes`, the
# sealed payloads' `octet_length`, read from the TOAST header without detoasting):
# rows are kept while the running total stays within the budget, the first one
# always. The first row past a bound comes back too, with its payload NULL and
# `keep` false: it is how the reader learns that there is more.
READ_EVENTS_MANY = sa.text(
    """
SELECT run_id, seq, key_id, CASE WHEN keep THEN payload END AS payload, keep
FROM (
    SELECT *, count(*) FILTER (WHERE keep) OVER (PARTITION BY run_id) AS kept
    FROM (
        SELECT run_id, seq, key_id, payload, rn,
               rn <= :limit AND (rn = 1 OR running <= :max_bytes) AS keep
        FROM (
            SELECT x.run_id, e.seq, e.key_id, e.payload,
                   row_number() OVER w AS rn,
                   sum(octet_length(e.payload)) OVER w AS running
            FROM unnest(:run_ids, :afters) AS x(run_id, after)
            CROSS JOIN LATERAL (
                SELECT seq, key_id, payload FROM raw_stream_events
                WHERE run_id = x.run_id AND seq > x.after ORDER BY seq LIMIT :limit + 1
            ) AS e
            WINDOW w AS (PARTITION BY x.run_id ORDER BY e.seq)
        ) AS sized
    ) AS marked
) AS counted
WHERE rn <= kept + 1
ORDER BY run_id, seq
"""
).bindparams(
    sa.bindparam("run_ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("afters", type_=ARRAY(INTEGER)),
    sa.bindparam("limit", type_=INTEGER),
    sa.bindparam("max_bytes", type_=sa.BigInteger),
)
