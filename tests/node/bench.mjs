// The same Durable Streams workload against several servers, side by side.
// Usage: node bench.mjs NAME=BASE_URL [NAME=BASE_URL ...]   (env APPENDS, WRITERS, SSE_MESSAGES)
// Prints one JSON object: {NAME: {appendsPerSecond, sseLatencyMs: {p50, p99, max}}, ...}.
const appends = Number(process.env.APPENDS || 2000)
const writers = Number(process.env.WRITERS || 8)
const sseMessages = Number(process.env.SSE_MESSAGES || 200)
const headers = { "content-type": "application/json" }

async function create(url) {
  const res = await fetch(url, { method: "PUT", headers })
  if (res.status !== 201) throw new Error(`PUT ${url}: ${res.status}`)
}

async function appendThroughput(base) {
  const urls = Array.from({ length: writers }, (_, i) => `${base}/v1/stream/bench-append-${Date.now()}-${i}`)
  await Promise.all(urls.map(create))
  const each = Math.ceil(appends / writers)
  const started = performance.now()
  await Promise.all(urls.map(async (url) => {
    for (let i = 0; i < each; i++) {
      const res = await fetch(url, { method: "POST", headers, body: JSON.stringify({ i }) })
      if (res.status !== 204) throw new Error(`POST ${url}: ${res.status}`)
    }
  }))
  return (each * writers) / ((performance.now() - started) / 1000)
}

async function sseLatency(base) {
  const url = `${base}/v1/stream/bench-sse-${Date.now()}`
  await create(url)
  const controller = new AbortController()
  const res = await fetch(`${url}?offset=-1&live=sse`, { signal: controller.signal })
  const reader = res.body.getReader()
  const decoder = new TextDecoder()
  const latencies = []
  let buffer = ""
  const receiving = (async () => {
    while (latencies.length < sseMessages) {
      const { value, done } = await reader.read()
      if (done) break
      buffer += decoder.decode(value, { stream: true })
      let end
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        if (!block.startsWith("event: data")) continue
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n")
        for (const item of JSON.parse(data)) latencies.push(performance.now() - item.sent)
      }
    }
  })()
  for (let i = 0; i < sseMessages; i++) {
    await fetch(url, { method: "POST", headers, body: JSON.stringify({ sent: performance.now() }) })
    await new Promise((r) => setTimeout(r, 5))
  }
  await receiving
  controller.abort()
  latencies.sort((a, b) => a - b)
  const at = (q) => Number(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(2))
  return { p50: at(0.5), p99: at(0.99), max: Number(latencies[latencies.length - 1].toFixed(2)) }
}

const results = {}
for (const arg of process.argv.slice(2)) {
  const [name, base] = arg.split("=")
  results[name] = { appendsPerSecond: Math.round(await appendThroughput(base)), sseLatencyMs: await sseLatency(base) }
}
console.log(JSON.stringify(results))
