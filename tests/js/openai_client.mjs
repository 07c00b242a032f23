// duet's router through the official `openai` client for Node, as an
// application would use it, against a cluster started by `duet up`
// (tests/openai_test.sh). Prints "ok - NAME" or "not ok - NAME: why" per
// check. Usage: node openai_client.mjs BASE_URL MODEL_FILE DUET_BINARY
import OpenAI from "openai";
import Ajv from "ajv";
import { execFileSync } from "node:child_process";

const [base, modelFile, duet] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${e && e.stack ? e.stack.split("\n").slice(0, 3).join(" | ") : e}`);
  }
}

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

// What `duet generate` writes for the prompt at temperature 0 (less the
// newline it ends its output with): the reference every path must match.
function reference(prompt, maxTokens, ignoreEos) {
  const args = ["generate", "-m", modelFile, "-p", prompt, "--temp", "0", "-n", String(maxTokens),
    "--no-echo", "-t", "1"];
  if (ignoreEos) args.push("--ignore-eos");
  return execFileSync(duet, args, { stdio: ["ignore", "pipe", "ignore"] }).toString().replace(/\n$/, "");
}

const model = (await client.models.list()).data[0].id;

await check("completions, not streamed, equal duet generate", async () => {
  const r = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, temperature: 0 });
  assert(r.choices[0].text === reference("Once upon a time", 12), `text '${r.choices[0].text}'`);
  assert(r.usage.completion_tokens >= 1 && r.usage.prompt_tokens > 1, "usage");
});

await check("completions streamed with include_usage", async () => {
  const s = await client.completions.create({ model, prompt: "The little dog", max_tokens: 10,
    temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = "", usage = null, afterUsage = 0;
  for await (const c of s) {
    if (usage) afterUsage++;
    if (c.choices.length) text += c.choices[0].text;
    if (c.usage) usage = c.usage;
  }
  assert(text === reference("The little dog", 10), `text '${text}'`);
  assert(usage && usage.completion_tokens >= 1 && afterUsage === 0, "usage chunk last");
});

await check("chat, not streamed", async () => {
  const r = await client.chat.completions.create({ model, max_tokens: 8, temperature: 0,
    messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi!" }] });
  const m = r.choices[0].message;
  assert(r.object === "chat.completion" && m.role === "assistant" && typeof m.content === "string", "shape");
  assert(r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, "usage");
});

await check("chat streamed with include_usage and logprobs", async () => {
  const s = await client.chat.completions.create({ model, max_tokens: 6, temperature: 0, stream: true,
    logprobs: true, top_logprobs: 2, stream_options: { include_usage: true },
    messages: [{ role: "user", content: [{ type: "text", text: "Tell me a story" }] }] });
  let tokens = 0, usage = null;
  for await (const c of s) {
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      for (const e of ch.logprobs?.content ?? []) {
        tokens++;
        assert(e.logprob <= 0 && e.top_logprobs.length === 2, "entry");
        assert(e.top_logprobs[0].token === e.token, "greedy takes the likeliest");
        assert(Buffer.from(e.bytes).toString() === e.token || e.token.includes("\ufffd"), "bytes");
      }
    }
  }
  assert(usage && tokens >= 1 && tokens <= usage.completion_tokens, `tokens ${tokens}`);
});

await check("completions logprobs", async () => {
  const r = await client.completions.create({ model, prompt: "Hello", max_tokens: 6, temperature: 0,
    logprobs: 3, ignore_eos: true });
  const lp = r.choices[0].logprobs;
  assert(lp.tokens.join("") === r.choices[0].text, "tokens spell the text");
  assert(lp.token_logprobs.length === 6 && lp.top_logprobs.every((t) => Object.keys(t).length >= 1), "shape");
  assert(lp.text_offset[0] === 0, "offsets");
});

await check("n: 2 with a seed, reproducible", async () => {
  const req = { model, prompt: "Once upon a time", max_tokens: 10, temperature: 1, seed: 42, n: 2 };
  const a = await client.completions.create(req), b = await client.completions.create(req);
  assert(a.choices.length === 2 && a.choices[1].index === 1, "two choices");
  assert(a.choices.every((c, i) => c.text === b.choices[i].text), "same again");
  const one = await client.completions.create({ ...req, n: 1, seed: 43 });
  assert(one.choices[0].text === a.choices[1].text, "choice 1 is seed + 1");
});

await check("parameters OpenAI has and duet honours or ignores", async () => {
  const r = await client.chat.completions.create({ model, max_completion_tokens: 5, temperature: 0.7,
    presence_penalty: 0.5, frequency_penalty: 0.5, logit_bias: { "13": -100 }, user: "u", seed: 1,
    metadata: { a: "b" }, store: false, parallel_tool_calls: false,
    messages: [{ role: "developer", content: "x" }, { role: "user", content: "y" }] });
  assert(r.usage.completion_tokens <= 5, "max_completion_tokens");
});

await check("the decode nodes speculated, and kept most proposals", async () => {
  const c = await (await fetch(`${base}/v1/cluster`)).json();
  const s = c.nodes.filter((n) => n.role === "decode").map((n) => n.speculation);
  const proposed = s.reduce((a, x) => a + x.proposed, 0), accepted = s.reduce((a, x) => a + x.accepted, 0);
  assert(proposed > 0 && accepted > 0, JSON.stringify(s));
  const m = await (await fetch(`${base}/metrics`)).text();
  assert(/duet_spec_tokens_total\{node="decode-[01]",kind="accepted"\} [1-9]/.test(m), "metrics");
});

await check("a field in no API is refused with a JSON error", async () => {
  let err = null;
  try {
    await client.completions.create({ model, prompt: "x", max_tokens: 1, bogus_field: 1 });
  } catch (e) {
    err = e;
  }
  assert(err && err.status === 400 && /unknown field 'bogus_field'/.test(err.message), String(err));
});

const schema = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 16 },
    age: { type: "integer" },
    mood: { enum: ["happy", "sad", null] },
    tags: { type: "array", items: { type: "boolean" }, maxItems: 3 },
    home: { type: "object", properties: { city: { type: "string", maxLength: 8 } }, required: ["city"],
      additionalProperties: false },
  },
  required: ["name", "age", "mood", "tags", "home"],
  additionalProperties: false,
};

await check("response_format json_schema: 100 of 100 sampled answers parse and validate", async () => {
  const validate = new Ajv().compile(schema);
  let ok = 0;
  const bad = [];
  const one = async (i) => {
    const r = await client.chat.completions.create({ model, max_tokens: 200, temperature: 1, seed: i,
      messages: [{ role: "user", content: `Describe person ${i} as JSON` }],
      response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } } });
    const text = r.choices[0].message.content;
    try {
      if (validate(JSON.parse(text))) ok++;
      else bad.push(text);
    } catch (e) {
      bad.push(`${r.choices[0].finish_reason}: ${text}`);
    }
  };
  for (let i = 0; i < 100; i += 10)
    await Promise.all(Array.from({ length: 10 }, (_, k) => one(i + k)));
  assert(ok === 100, `${ok} of 100 valid; first bad: ${bad[0]}`);
});

async function failovers() {
  const m = (await (await fetch(`${base}/metrics`)).text()).match(/^duet_failovers_total (\d+)/m);
  return m ? Number(m[1]) : 0;
}

// Whether a process matches the pattern (pgrep -f).
function running(pattern) {
  try {
    execFileSync("pgrep", ["-f", pattern], { stdio: "ignore" });
    return true;
  } catch (e) {
    return false;
  }
}
// Until decode-0 runs and the router knows it live (duet up restarts a
// killed node).
async function decodeUp() {
  for (let i = 0; i < 600; i++) {
    const c = await (await fetch(`${base}/v1/cluster`)).json();
    if (running("name decode-0 ") && c.nodes.some((n) => n.name === "decode-0" && n.alive)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("no decode node came back within 30 s");
}

// The newcomer's scenario: four streams, one decode node killed mid-stream
// (duet up restarts it): every stream still ends with duet generate's text.
// The kill must come while the node still generates; on a busy machine
// this client can read its fifth chunk after the node has sent its last,
// so an attempt where no stream was failed over is run again (three at
// most).
await check("four streams survive kill -9 of a decode node", async () => {
  const prompts = ["Once upon a time", "The little dog", "In a big city", "A girl named Lily"];
  const refs = prompts.map((p) => reference(p, 240, true));
  for (let attempt = 1; ; attempt++) {
    await decodeUp();
    const f0 = await failovers();
    const got = prompts.map(() => ({ text: "", chunks: 0, done: false }));
    const run = async (i) => {
      const s = await client.completions.create({ model, prompt: prompts[i], max_tokens: 240,
        temperature: 0, ignore_eos: true, stream: true });
      for await (const c of s) {
        got[i].chunks++;
        if (c.choices.length) got[i].text += c.choices[0].text;
      }
      got[i].done = true;
    };
    const all = Promise.all(prompts.map((_, i) => run(i)));
    while (got.some((g) => g.chunks < 5)) await new Promise((r) => setTimeout(r, 5));
    const before = got.map((g) => g.chunks);
    execFileSync("pkill", ["-9", "-f", "name decode-0 "]);
    await all;
    for (let i = 0; i < 4; i++)
      assert(got[i].text === refs[i], `stream ${i} (${before[i]} chunks before the kill) got '${got[i].text}'`);
    assert(before.some((n) => n < 200), "the kill came mid-stream");
    if ((await failovers()) > f0) return;
    assert(attempt < 3, "the router failed streams over (in none of 3 attempts did the kill come before the node's last token)");
    console.log(`# attempt ${attempt}: the node had sent every token before the kill; again`);
  }
});

process.exit(failed ? 1 : 0);
