"""The Durable Streams protocol under `/ds/`: user streams and every run, read-only.

Modules: `offsets` (seq <-> offset strings), `protocol` (header rules, pure),
`tables` and `store` (the SQL), `wakeups` (live readers' wake-ups), `live`
(long-poll and SSE), `routes` (the HTTP edge), `runs` (runs as streams).
"""
