"""The broker: persistence, authentication and encryption of agent runs.

Rooms (`docs/ARCHITECTURE.md` draws them; `tests/unit/test_repository.py`
holds the import rules):

- `store/` — the database behind ports: records, sealing, the NOTIFY format,
  the PostgreSQL adapter and its in-memory twin.
- `web/` — the HTTP platform both sides stand on: settings, auth, the error
  answer, metrics, SSE framing, logs.
- `write/` — the write side: run routes, producers, the stream manager and its
  flush loop, the agent client, retention.
- `integrations/` — what agent tools may reach: routes, the SQL screen, the
  read-only query runner, the demo database.
- `errors.py` — the one error tree and table (code and HTTP status per class).
- `app.py`, `cli.py` — the composition roots: the only modules that wire the
  rooms and the read side (`subscribe/`) together.
"""
