"""The database behind narrow ports.

- `ports` — one Protocol per role (flush loop, producer, tail, subscription,
  lifecycle, retention); consumers name only these.
- `records` — the plain records every adapter returns.
- `postgres` (with `connection`, `statements`, `messages`, `integration_rows`) —
  the PostgreSQL adapter: only SQL, driver errors translated where they enter.
- `memory` — the in-memory twin for unit tests; the conformance suite holds
  both to one contract.
- `sealing` and `crypto` — what each encrypted value is bound to, and the keyring.
- `notify` and `listening` — the `run_id:seq` wake-up and its LISTEN connection.
- `database` and `migrate` — the engine (or the embedded server) and Alembic.
"""
