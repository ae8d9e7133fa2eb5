"""The read side: viewers follow runs from the table, live, through one shared tail per run.

Modules, one noun each:

- `routes` — the endpoints: subscribe (POST), events (GET, for `EventSource`), the
  run, the thread's messages; `response` races each stream against the client's
  disconnect.
- `cursor`, `negotiation`, `render` — pure: where a subscription starts, which
  format it answers in, how a run reads as JSON, Markdown or plain text.
- `subscription` — one request's frames: live through the hub, or straight from
  the table for a finished run (with the ending rebuilt after retention).
- `viewer` — a viewer's bounded queue and the delivery-by-seq rule (design §9).
- `tail` — one run followed by this process: its head, its viewers, each event
  encoded once.
- `hub` — every tail of the process and the single reader that feeds them, one
  statement per read whatever the number of runs; `listener` — the process's one
  LISTEN connection, which only says which runs to read now.

NOTIFY is a wake-up and the table is the truth: polling always runs, a lost
notification costs latency, never an event.
"""
