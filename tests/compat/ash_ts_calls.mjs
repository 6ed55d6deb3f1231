// The calls of Ash's TypeScript client (`@ash-ai/sdk`'s AshClient), made the way it makes
// them, against a running ashd; one line per call, then "N passed, M failed".
//
// Not Ash's code (its package is not on the npm registry): each call is the HTTP request that
// AshClient's method of that name sends, per Ash's reference (method list, routes, bodies),
// with its conventions: Node's own fetch, `Authorization: Bearer <key>`, a JSON body with
// `Content-Type: application/json`, a non-2xx answer thrown as `new Error(body.error)`, the
// payload read from Ash's wrapper (`{agent}`, `{sessions}`, `{run}`, ...), SSE frames parsed
// from `event:`/`data:` lines. Each check reads what an Ash client reads from the answer.
//
// Usage: node ash_ts_calls.mjs SERVER_URL API_KEY AGENT_FOLDER   (Node >= 18; exit 1 on a failure)

const [serverUrl, apiKey, agentFolder] = process.argv.slice(2);
if (!serverUrl || !apiKey || !agentFolder) {
  console.error("usage: node ash_ts_calls.mjs SERVER_URL API_KEY AGENT_FOLDER");
  process.exit(2);
}
const base = serverUrl.replace(/\/$/, "");
const agentName = `ts-${process.pid}`;

function headers(json) {
  const h = { Authorization: `Bearer ${apiKey}` };
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function call(method, path, body) {
  const res = await fetch(base + path, { method, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) {
    const err = await res.json().catch(() => ({ error: res.statusText }));
    throw new Error(`${res.status} ${err.error}`);
  }
  return res.status === 204 ? null : res.json();
}

async function* sse(res) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body) {
    buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { type, data: JSON.parse(data.join("\n")) };
    }
  }
}

async function sendMessageStream(sessionId, content, opts = {}) {
  const res = await fetch(`${base}/api/sessions/${sessionId}/messages`, {
    method: "POST", headers: headers(true), body: JSON.stringify({ content, ...opts }) });
  if (!res.ok) {
    const err = await res.json().catch(() => ({ error: res.statusText }));
    throw new Error(`${res.status} ${err.error}`);
  }
  const events = [];
  for await (const event of sse(res)) events.push(event);
  return events;
}

const resultOf = (events) => events.find((e) => e.type === "message" && e.data.type === "result")?.data;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let passed = 0;
let failed = 0;

function expect(ok, what) {
  if (!ok) throw new Error(`unexpected answer: ${what}`);
}

async function step(name, fn) {
  try {
    const value = await fn();
    passed += 1;
    console.log(`PASS ${name}`);
    return value;
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}: ${err.message}`);
    return undefined;
  }
}

async function main() {
  const e = encodeURIComponent(agentName);
  await step("health", async () => expect((await call("GET", "/health")).status === "ok", "status"));
  await step("deployAgent", async () =>
    expect((await call("POST", "/api/agents", { name: agentName, path: agentFolder })).agent.name === agentName, "agent"));
  await step("listAgents", async () =>
    expect((await call("GET", "/api/agents")).agents.some((a) => a.name === agentName), "agents"));
  await step("getAgent", async () => expect((await call("GET", `/api/agents/${e}`)).agent.name === agentName, "agent"));

  const session = await step("createSession (with options)", async () => {
    const { session: s } = await call("POST", "/api/sessions", { agent: agentName,
      systemPrompt: "You are the TS compat agent.", allowedTools: ["Read"], disallowedTools: ["Write"],
      betas: ["context-1m-2025-08-07"], extraEnv: { COMPAT: "1" },
      subagents: { helper: { description: "helps", prompt: "You help." } }, initialAgent: "helper" });
    expect(s.status === "active" && s.agentName === agentName, JSON.stringify(s));
    return s;
  });
  const sid = session?.id ?? "missing";
  await step("listSessions", async () =>
    expect((await call("GET", `/api/sessions?agent=${e}`)).sessions.some((s) => s.id === sid), "sessions"));
  await step("getSession", async () => expect((await call("GET", `/api/sessions/${sid}`)).session.id === sid, "session"));
  await step("updateSessionConfig", async () => {
    const { session: s } = await call("PATCH", `/api/sessions/${sid}/config`, { allowedTools: ["Read", "Grep"] });
    expect(s.id === sid, "session");
  });
  await step("sendMessageStream", async () => {
    const events = await sendMessageStream(sid, "[[say: hello from ts]]");
    expect(resultOf(events)?.result === "hello from ts", JSON.stringify(resultOf(events)));
    expect(events.at(-1).type === "done", `last event ${events.at(-1)?.type}`);
  });
  await step("sendMessageStream (includePartialMessages)", async () => {
    const events = await sendMessageStream(sid, "[[say: partial]]", { includePartialMessages: true });
    expect(events.some((ev) => ev.type === "message" && ev.data.type === "stream_event"), "no stream_event");
  });
  await step("sendMessageStream (maxTurns, effort, thinking, model)", async () => {
    const events = await sendMessageStream(sid, "[[bash: echo 1]] [[say: done]]",
      { maxTurns: 1, effort: "low", thinking: { type: "enabled", budgetTokens: 2048 }, model: "claude-haiku-4-5" });
    expect(resultOf(events)?.subtype === "error_max_turns", JSON.stringify(resultOf(events)));
  });
  await step("sendMessageStream (outputFormat)", async () => {
    const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
    const events = await sendMessageStream(sid, '[[tool: StructuredOutput {"city": "Paris"}]]',
      { outputFormat: { type: "json_schema", schema } });
    expect(resultOf(events)?.structured_output?.city === "Paris", JSON.stringify(resultOf(events)));
  });
  await step("sendMessageStream (maxBudgetUsd)", async () => {
    const events = await sendMessageStream(sid, "[[say: cheap]]", { maxBudgetUsd: 5 });
    expect(resultOf(events)?.result === "cheap", JSON.stringify(resultOf(events)));
  });
  await step("listMessages", async () =>
    expect((await call("GET", `/api/sessions/${sid}/messages`)).messages.length >= 2, "messages"));
  await step("listSessionEvents", async () =>
    expect((await call("GET", `/api/sessions/${sid}/events`)).events.length > 0, "events"));
  await step("getSessionLogs", async () => expect(Array.isArray((await call("GET", `/api/sessions/${sid}/logs`)).logs), "logs"));
  await step("pauseSession", async () =>
    expect((await call("POST", `/api/sessions/${sid}/pause`)).session.status === "paused", "status"));
  await step("resumeSession", async () =>
    expect((await call("POST", `/api/sessions/${sid}/resume`)).session.status === "active", "status"));

  const ev = `/api/agents/${e}`;
  const evalCase = await step("createEvalCase", async () => {
    const { case: c } = await call("POST", `${ev}/eval-cases`,
      { question: "[[say: Paris is in France]]", expectedTopics: ["Paris"], category: "geo", tags: ["ts"] });
    expect(c.question === "[[say: Paris is in France]]" && c.expectedTopics[0] === "Paris", JSON.stringify(c));
    return c;
  });
  const cid = evalCase?.id ?? "missing";
  await step("listEvalCases", async () => expect((await call("GET", `${ev}/eval-cases`)).cases.some((c) => c.id === cid), "cases"));
  await step("getEvalCase", async () => expect((await call("GET", `${ev}/eval-cases/${cid}`)).case.id === cid, "case"));
  await step("updateEvalCase", async () => {
    const { case: c } = await call("PATCH", `${ev}/eval-cases/${cid}`, { expectedNotTopics: ["Lyon"] });
    expect(c.expectedNotTopics[0] === "Lyon" && c.expectedTopics[0] === "Paris", JSON.stringify(c));
  });
  await step("importEvalCases", async () => {
    const res = await call("POST", `${ev}/eval-cases/import`,
      { cases: [{ question: "[[say: Lyon]]", expectedTopics: ["Paris"] }, { question: "[[say: temp]]" }] });
    expect(res.imported === 2, JSON.stringify(res));
  });
  await step("exportEvalCases", async () => expect((await call("GET", `${ev}/eval-cases/export`)).cases.length === 3, "cases"));
  await step("deleteEvalCase", async () => {
    const temp = (await call("GET", `${ev}/eval-cases`)).cases.find((c) => c.question === "[[say: temp]]");
    await call("DELETE", `${ev}/eval-cases/${temp.id}`);
  });
  const runs = [];
  for (const label of ["A", "B"]) {
    const run = await step(`startEvalRun ${label}`, async () => {
      const { run: r } = await call("POST", `${ev}/eval-runs`, {});
      expect(r.totalCases === 2, JSON.stringify(r));
      return r;
    });
    const done = await step(`getEvalRun ${label} (polled to the end)`, async () => {
      for (let i = 0; i < 600; i += 1) {
        const { run: r } = await call("GET", `${ev}/eval-runs/${run?.id}`);
        if (r.status !== "running") {
          expect(r.status === "completed" && r.passed === 1 && r.failed === 1, JSON.stringify(r));
          return r;
        }
        await sleep(500);
      }
      throw new Error("still running");
    });
    runs.push(done?.id ?? "missing");
  }
  await step("listEvalRuns", async () => expect((await call("GET", `${ev}/eval-runs`)).runs.length === 2, "runs"));
  const results = await step("getEvalRunResults", async () => {
    const { results: rs } = await call("GET", `${ev}/eval-runs/${runs[0]}/results`);
    expect(rs.length === 2 && rs.some((r) => r.status === "failed"), JSON.stringify(rs));
    return rs;
  });
  await step("compareEvalRuns", async () => {
    const { comparison } = await call("GET", `${ev}/eval-runs/compare?runA=${runs[0]}&runB=${runs[1]}`);
    expect(comparison.results.length === 2 && comparison.results.every((p) => p.resultA && p.resultB && p.question),
      JSON.stringify(comparison.results));
  });
  await step("scoreEvalResult", async () => {
    const { result } = await call("PATCH", `${ev}/eval-results/${results?.[0]?.id}`, { humanScore: 4, humanNotes: "fine" });
    expect(result.humanScore === 4, JSON.stringify(result));
  });
  await step("scoreEvalRun", async () => {
    const res = await call("POST", `${ev}/eval-runs/${runs[1]}/score`, { humanScore: 3 });
    expect(res.scored === 2 && res.results.every((r) => r.humanScore === 3), JSON.stringify(res));
  });

  await step("listUsageEvents", async () =>
    expect((await call("GET", `/api/usage?sessionId=${sid}`)).events.length > 0, "events"));
  await step("getUsageStats", async () =>
    expect((await call("GET", `/api/usage/stats?sessionId=${sid}`)).stats.totalMessages > 0, "stats"));
  await step("getAnalytics", async () => {
    const a = await call("GET", "/api/analytics");
    expect(a.agents.total >= 1 && a.sessions.total >= 1 && a.evals.totalRuns >= 2 && "totalInputTokens" in a.usage,
      JSON.stringify(a));
  });
  await step("endSession", async () =>
    expect((await call("DELETE", `/api/sessions/${sid}`)).session.status === "ended", "status"));
  await step("deleteAgent", async () => { await call("DELETE", `/api/agents/${e}`); });

  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.log(`FAIL (script): ${err.stack}`);
  process.exit(1);
});
