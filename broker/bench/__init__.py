"""`broker bench`: the benchmark of design section 8, as a first-class command.

The parts, one noun each:

- `plan`: the scenarios and their sizes in each mode (`--quick`, full, tiny);
- `cluster`: the processes under test — a database (embedded in a temporary
  directory, or `DATABASE_URL`), the agent service and the broker, each a real
  uvicorn process on a free loopback port;
- `load`: the load generator, a separate process that runs one scenario's
  repetitions and prints their figures as JSON (so the broker's CPU is not
  shared with the clients that measure it);
- `client`: what the load process drives with — bench runs, SSE viewers
  that check exactly-once delivery, the direct pipe to the agent;
- `probes`: the broker process's CPU and RSS, the database's counters;
- `scenarios/*`: one module per scenario;
- `stats`: percentiles, and median / min / max over repetitions;
- `report`: the machine, the settings, the table and the JSON;
- `command`: the orchestration that ties them together.
"""
