"""The Durable Streams protocol under `/ds/`: user streams, and every run read-only.

Modules: `offsets` (seq <-> offset strings), `protocol` (header and body rules,
pure), `tables` and `store` (all the SQL), `writer` (create, append, close,
fork), `reader` (catch-up, long-poll, SSE over any source), `sources` (a user
stream as a source), `runs` (a run as a source, on the shared run tails),
`wakeups` (the LISTEN connection of user streams), `routes` (the HTTP edge).
"""
