// Reads a run through the official Durable Streams client, with a disconnect in the middle.
// Usage: node read_run.mjs URL TOKEN CUT_AFTER
// Prints one JSON line: {"seqs": [...], "resumedFrom": "<offset>"}.
import { stream } from "@durable-streams/client"

const [url, token, cutAfter] = process.argv.slice(2)
const headers = { Authorization: `Bearer ${token}` }
const seqs = []

// First session: live SSE until CUT_AFTER events arrived, then drop the connection.
// Batches the client still hands over after the cut are ignored: the resume offset
// is that of the last batch counted, so nothing is lost and nothing is counted twice.
let resumeFrom = "-1"
{
  const controller = new AbortController()
  let done = false
  const res = await stream({ url, headers, live: "sse", signal: controller.signal })
  await new Promise((resolve) => {
    res.subscribeJson((batch) => {
      if (done) return
      for (const item of batch.items) seqs.push(item.seq)
      resumeFrom = batch.offset
      if (seqs.length >= Number(cutAfter) || batch.streamClosed) {
        done = true
        resolve()
      }
    })
  })
  controller.abort()
  res.cancel()
}

// Second session: resume from the last offset the client saw, to the end of the run.
{
  const res = await stream({ url, headers, live: "sse", offset: resumeFrom })
  await new Promise((resolve, reject) => {
    res.subscribeJson((batch) => {
      for (const item of batch.items) seqs.push(item.seq)
      if (batch.streamClosed) resolve()
    })
    res.closed?.catch?.(reject)
  })
  res.cancel()
}
console.log(JSON.stringify({ seqs, resumedFrom: resumeFrom }))
process.exit(0)
