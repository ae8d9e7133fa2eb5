"""The agent service: a stateless function from a conversation to a stream of events.

A request carries the thread's history, the new user message and the
integrations the run may query; the service builds a fresh LangGraph agent for
it, streams the agent's output as the typed events of `models.events`, and
keeps nothing once the run's terminal event has been delivered. It talks to
the broker only over HTTP (the integration-query callback), holds no
credentials beyond the local secret, and imports no other package of the
project but `models`.

The modules, one noun each:

- `app`: the FastAPI application (routes, auth, error bodies, lifespan).
- `settings`: `AgentSettings`, read from the environment.
- `schemas`: request and error bodies of the HTTP contract.
- `registry`: in-flight runs, their supervisors, detach grace and forgetting.
- `cancel`: the thread-safe cancellation token of a run.
- `buffer`: a run's bounded, append-only event log that readers follow.
- `response`: the SSE response that streams a run's buffer to one client.
- `sse`: the SSE frame encoding of events.
- `runner`: one run's event source (LangGraph agent or bench load).
- `graph`: the model ⇄ tools LangGraph built per request.
- `translate`: LangGraph stream parts → typed events.
- `providers`: which chat model serves a run (Claude or the scripted model).
- `scripted`: the offline scripted chat model.
- `catalog`: an integration's tables, columns and foreign keys, and the SQL that reads them.
- `planner`: question + catalog → the SQL the offline model runs, or "can't".
- `vocabulary`: a question's words → tables, columns, money, time columns, join paths.
- `periods`: time ranges named in a question, anchored on the latest date in the data.
- `joins`: the FROM clause of a planned query along foreign keys, and its date literals.
- `answers`: a query's result as the offline model's Markdown answer.
- `bench`: the `bench events=N rate=R [size=B]` load.
- `tools`: the `query_integration` tool.
- `callback`: the HTTP client of the broker's integration-query callback.
- `errors`: the package's exception tree and the error types of `error` events.
"""
