// Writes tests/vectors/bpe.json: token ids of a few hundred strings by the
// reference implementation of Hugging Face tokenizers (tokenizers.js),
// for the Llama 3 and Qwen3 tokenizers in ../shared/models. test_bpe.c
// checks duet's byte-level BPE against them.
//
// Regenerate (needs node and network access to the npm registry; nothing
// of it enters the repository):
//   mkdir /tmp/hftok && cd /tmp/hftok && npm init -y && npm install @huggingface/tokenizers@0.2.0
//   NODE_PATH=/tmp/hftok/node_modules node tests/vectors/gen_bpe_vectors.mjs ../shared/models > tests/vectors/bpe.json
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const { Tokenizer } = require("@huggingface/tokenizers");
const dir = process.argv[2];
const load = (name) =>
	new Tokenizer(JSON.parse(readFileSync(`${dir}/${name}-tokenizer.json`)),
		      JSON.parse(readFileSync(`${dir}/${name}-tokenizer_config.json`)));
const toks = { llama3: load("llama3"), qwen3: load("qwen3") };

const base = [
	"", " ", "  ", "\n", "\n\n\n", "\t", " \t \n ", "a", "Hello world", "Hello, world!",
	" Hello world", "Hello  world", "Hello   world  ", "hello\nworld", "hello\r\nworld",
	"It's I'm you're we've they'll he'd IT'S", "don't DON'T Don't", "'s 's ''s",
	"1", "12", "123", "1234", "12345", "1234567890", "3.14159", "1,000,000", "v1.2.3", "2026-12-03",
	"0x7fff", "1e-5", "-42", "$100.00", "100%", "#1 @user", "a1b2c3", "ab123cd",
	"café", "naïve", "Ångström", "résumé", "Straße", "ÀÉÎÕÜ", "e\u0301", "A\u030a", "\u00c5",
	"ﬁ ligature", "Ｆｕｌｌｗｉｄｔｈ", "\u00a0nbsp", "zero\u200bwidth", "soft\u00adhyphen",
	"你好", "你好，世界！", "我爱北京天安门", "日本語のテキスト", "カタカナ", "한국어 텍스트",
	"Привет, мир!", "Ελληνικά", "עברית", "العربية", "हिन्दी", "தமிழ்", "ภาษาไทย", "ქართული",
	"Tiếng Việt", "Türkçe", "Polski źdźbło", "čeština", "Ελλάδα 2024",
	"😀", "😀😀😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇩🇪", "❤️", "✓ ✗ → ←", "∀x∈ℝ: x²≥0", "½ ¾ ⅓",
	"def f(x):\n    return x * 2\n", "int main(void) { return 0; }", "for (i = 0; i < n; i++) {}",
	"if x == 1:\n\tpass", "    indented\n        more", "console.log(`template ${x}`);",
	"<div class=\"a\">text</div>", "SELECT * FROM t WHERE id = 1;", "a = b + c - d * e / f",
	"{\"key\": [1, 2, 3], \"n\": null}", "x => x.map(y => y ** 2)", "#include <stdio.h>",
	"https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Users\\name",
	"...", "!!!", "???", "---", "___", "***", "///", "~~~", "((()))", "[[]]", "{{}}",
	"a.b.c", "a,b,c", "a;b;c", "a:b:c", "a-b-c", "a_b_c", "a/b/c",
	"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>",
	"<|im_start|>user\nhi<|im_end|>", "<|endoftext|>", "text<|im_end|>more", "<think>x</think>",
	"<|begin_of_text|>Hello<|eot_id|>", "<|im_start|><|im_start|>", "<|notaspecial|>", "<|", "|>",
	"\u0000", "\u0001\u0002", "\u007f", "tab\tsep\tvalues", "trailing space ", "trailing newline\n",
	"     ", "\n \n \n", " \n", "\n ", "a\n\n\nb", "a \n b", "a  \n  b",
	"The quick brown fox jumps over the lazy dog.",
	"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
];
const words = ["the", " The", "  cat", "\n", "123", "4567", "é", "中文", "🙂", "'ll", "...", "\t",
	       " x", "ÅÅ", "<|im_end|>", "<|eot_id|>", "  ", "A\u030a", "don't", "$5"];
// Deterministic mixtures of the pieces above.
let seed = 12345;
const rnd = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
const mixed = [];
for (let i = 0; i < 200; i++) {
	let s = "";
	const k = 1 + rnd(8);
	for (let j = 0; j < k; j++) s += words[rnd(words.length)];
	mixed.push(s);
}
const texts = [...base, ...mixed];
const out = texts.map((text) => {
	const row = { text };
	for (const [name, t] of Object.entries(toks))
		row[name] = t.encode(text, { add_special_tokens: false }).ids;
	return row;
});
process.stdout.write(JSON.stringify(out, null, 0).replace(/\},\{/g, "},\n{") + "\n");
