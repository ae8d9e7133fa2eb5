"""The HTTP platform both sides stand on.

- `settings` — one `Settings` per process, failing loudly.
- `http` — the contract's conventions: the one error answer, request ids, body
  limits, the dependencies (`authenticate`, `get_store`, `path_id`).
- `auth` — bearer tokens (HMAC) and the principal they name.
- `sse` — Server-Sent Events framing: the parser of agent streams, the encoders.
- `metrics` — the Prometheus registry; `logs` — structlog set-up.
"""
