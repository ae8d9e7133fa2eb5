"""Integrations: what agent tools may reach, and the callback that reaches them.

- `routes` — register and list integrations; the agents' query callback.
- `policy` — what an integration may reach (design 4.7), as pure decisions.
- `rules` — the SQL screen and result shaping (pure).
- `querying` — one read-only, time-boxed, row-capped query on a held connection.
- `demo` — the seeded sample database registered as integration `demo`.
"""
