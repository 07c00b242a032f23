// The soak: many streamed requests against a running cluster (bench/soak.sh
// starts it with `duet up`), a share of clients hanging up at random points
// (before the first token, mid-prefill, mid-stream), one decode node killed
// halfway (duet up starts it again). At the end every node must hold no KV
// and no queue, the router no request, each daemon's RSS must be within 5%
// of its value after warm-up, and every stream that completed must equal
// `duet generate`. Writes SUMMARY (JSON) and prints progress and a verdict.
// Usage: node soak.mjs BASE_URL MODEL DUET REQUESTS HANGUP_SHARE SUMMARY
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const [base, modelFile, duet, nReq = "2000", hangShare = "0.3", summaryPath = "soak.json"] =
  process.argv.slice(2);
const N = Number(nReq), HANG = Number(hangShare), CONCURRENCY = 16, RSS_TOLERANCE = 0.05;

// Deterministic pseudo-randomness: the same soak every run.
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

const words = "once upon a time there was a little dog who liked to run in the big green park with".split(" ");
const prompts = Array.from({ length: 24 }, (_, i) => {
  const n = i % 3 === 0 ? 120 : 4 + (i % 7) * 3; // long ones go to the prefill node
  return Array.from({ length: n }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(" ");
});
const maxTokens = prompts.map((_, i) => 8 + (i % 5) * 8);

function reference(i) {
  return execFileSync(duet, ["generate", "-m", modelFile, "-p", prompts[i], "--temp", "0", "-n",
    String(maxTokens[i]), "--no-echo", "-t", "1"], { stdio: ["ignore", "pipe", "ignore"] })
    .toString().replace(/\n$/, "");
}

const daemons = ["router", "prefill-0", "decode-0", "decode-1"];
function pidOf(name) {
  const pat = name === "router" ? "duet-router .*--http-port" : `name ${name} `;
  return execFileSync("pgrep", ["-f", pat]).toString().trim().split("\n")[0];
}
function rssKb(name) {
  const s = readFileSync(`/proc/${pidOf(name)}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(s)[1]);
}

async function one(i, hang) {
  const p = i % prompts.length;
  const ac = new AbortController();
  let text = "", chunks = 0, finished = false;
  // a hang-up: at a random delay (before or during prefill) or after a
  // random number of chunks (mid-stream)
  const hangAfterChunks = hang && rand() < 0.5 ? Math.floor(rand() * maxTokens[p]) : -1;
  const timer = hang && hangAfterChunks < 0 ? setTimeout(() => ac.abort(), rand() * 60) : null;
  try {
    const r = await fetch(`${base}/v1/completions`, {
      method: "POST", signal: ac.signal, headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: prompts[p], max_tokens: maxTokens[p], temperature: 0, stream: true }),
    });
    if (r.status !== 200) return { p, status: r.status };
    const dec = new TextDecoder();
    let buf = "";
    for await (const part of r.body) {
      buf += dec.decode(part, { stream: true });
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, k);
        buf = buf.slice(k + 2);
        if (!ev.startsWith("data: ")) continue;
        if (ev === "data: [DONE]") { finished = true; continue; }
        const j = JSON.parse(ev.slice(6));
        if (j.error) return { p, error: j.error.message };
        if (j.choices.length) text += j.choices[0].text;
        if (++chunks === hangAfterChunks) { ac.abort(); return { p, hung: true }; }
      }
    }
  } catch (e) {
    if (ac.signal.aborted) return { p, hung: true };
    return { p, error: String(e) };
  } finally {
    if (timer) clearTimeout(timer);
  }
  return { p, text, finished };
}

async function cluster() {
  return (await fetch(`${base}/v1/cluster`)).json();
}

const t0 = Date.now();
const refs = prompts.map((_, i) => reference(i));
// warm-up: every prompt once, then the RSS baseline
for (let i = 0; i < prompts.length; i++) await one(i, false);
await new Promise((r) => setTimeout(r, 1000));
const rss0 = Object.fromEntries(daemons.map((d) => [d, rssKb(d)]));

let next = 0, done = 0, killed = false;
const results = [];
async function worker() {
  while (next < N) {
    const i = next++;
    if (!killed && i >= N / 2) {
      killed = true;
      execFileSync("pkill", ["-9", "-f", "name decode-0 "]);
      process.stderr.write(`\nsoak: killed decode-0 at request ${i}\n`);
    }
    results.push(await one(i, rand() < HANG));
    if (++done % 100 === 0)
      process.stderr.write(`\rsoak: ${done}/${N} requests, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
process.stderr.write("\n");

// idle: wait for the restarted node and the last cancellations
let c, idle = false;
for (let k = 0; k < 100 && !idle; k++) {
  await new Promise((r) => setTimeout(r, 200));
  c = await cluster();
  idle = c.nodes.length === 3 && c.nodes.every((n) => n.alive && n.kv_blocks_free === n.kv_blocks_total &&
    n.running === 0 && n.waiting_kv === 0 && n.local_prefill === 0 && n.queued_prompt_tokens === 0 &&
    n.inflight === 0);
}
await new Promise((r) => setTimeout(r, 1000));
const rss1 = Object.fromEntries(daemons.map((d) => [d, rssKb(d)]));
const completed = results.filter((r) => r.finished);
const wrong = completed.filter((r) => r.text !== refs[r.p]);
const hung = results.filter((r) => r.hung).length;
const errors = results.filter((r) => r.error || r.status);
// decode-0 restarted: its RSS is compared with the survivors' only
const rssOk = daemons.filter((d) => d !== "decode-0").every((d) => rss1[d] <= rss0[d] * (1 + RSS_TOLERANCE));
const summary = {
  requests: N, completed: completed.length, hung_up: hung, failed: errors.length,
  failed_examples: errors.slice(0, 3), wrong_text: wrong.length, seconds: (Date.now() - t0) / 1000,
  idle_at_end: idle, nodes_at_end: c.nodes.map((n) => ({ name: n.name, kv_free: n.kv_blocks_free,
    kv_total: n.kv_blocks_total, running: n.running, queued_tokens: n.queued_prompt_tokens,
    inflight: n.inflight })),
  rss_kb_after_warmup: rss0, rss_kb_at_end: rss1, rss_within_5_percent: rssOk,
};
writeFileSync(summaryPath, JSON.stringify(summary, null, 2));
console.log(JSON.stringify(summary, null, 2));
const pass = idle && rssOk && wrong.length === 0 && completed.length + hung + errors.length === N;
console.log(pass ? "soak: PASS" : "soak: FAIL");
process.exit(pass ? 0 : 1);
