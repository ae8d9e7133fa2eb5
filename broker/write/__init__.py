"""The write side: from `POST /runs` to rows in `raw_stream_events`.

- `routes` — `POST /api/threads` and `POST /api/threads/{id}/runs`.
- `producer` — one task per run: the agent's SSE stream into its `RunStream`.
- `run_stream` — one run's write state; `ending_of`, a terminal event's status.
- `streams` — the `StreamManager` and its swap-and-flush loop (fenced, batched).
- `batching` — when to flush next, and backoff (pure).
- `agent_client` — the agent service's HTTP API, its errors translated.
- `retention` — the periodic sweep of finished runs' raw events.
"""
