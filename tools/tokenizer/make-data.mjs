// Builds fixtures/tokenizer/ from two npm tokenizers that this project did not write:
//
//   llama3-tokenizer-js  Llama 3 byte-level BPE (128256 tokens, 280147 merges)
//   llama-tokenizer-js   LLaMA SentencePiece vocabulary (32000 tokens, as BPE merges)
//
// Outputs (deterministic: same package versions, same bytes):
//   llama3.vocab.txt   one token per line, in id order (byte-level unicode as in GGUF)
//   llama3.merges.u24  merges in rank order: two little-endian 24-bit token ids each
//   llama.vocab.txt    one token per line, in id order
//   llama.scores.f32   one little-endian f32 score per token (see below)
//   corpus.json        [{text, llama3, llama}]: the packages' own encodings of each text
//
// The Rust tests turn the vocabulary files into vocabulary-only GGUF files and check that
// our encoder reproduces every id list exactly.
//
// Usage: cd tools/tokenizer && npm install && node make-data.mjs (package.json pins the
// exact package versions).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import llama3 from 'llama3-tokenizer-js';
import llama from 'llama-tokenizer-js';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '..', '..', 'fixtures', 'tokenizer');
fs.mkdirSync(out, { recursive: true });

function check(cond, msg) {
  if (!cond) {
    console.error('error: ' + msg);
    process.exit(1);
  }
}

// ---- vocabularies -------------------------------------------------------------------

function writeVocab(name, vocab) {
  for (const t of vocab) check(t.length > 0 && !t.includes('\n'), `${name}: token ${JSON.stringify(t)} cannot be one line`);
  check(new Set(vocab).size === vocab.length, `${name}: duplicate tokens`);
  fs.writeFileSync(path.join(out, `${name}.vocab.txt`), vocab.join('\n') + '\n');
}

// Merges are stored by the package as a Map "left right" -> priority, in rank order.
function mergePairs(tok) {
  const pairs = [];
  for (const key of tok.merges.keys()) {
    const sp = key.indexOf(' ', 1);
    const [a, b] = [key.slice(0, sp), key.slice(sp + 1)];
    const ia = tok.vocabByString.get(a);
    const ib = tok.vocabByString.get(b);
    check(ia !== undefined && ib !== undefined && tok.vocabByString.has(a + b), `merge ${key} is not in the vocabulary`);
    pairs.push([ia, ib]);
  }
  return pairs;
}

writeVocab('llama3', llama3.vocabById);
{
  const pairs = mergePairs(llama3);
  const buf = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([a, b], i) => {
    buf.writeUIntLE(a, 6 * i, 3);
    buf.writeUIntLE(b, 6 * i + 3, 3);
  });
  fs.writeFileSync(path.join(out, 'llama3.merges.u24'), buf);
  console.log(`llama3: ${llama3.vocabById.length} tokens, ${pairs.length} merges`);
}

// The package ships SentencePiece's vocabulary as BPE merges (the Hugging Face conversion),
// not SentencePiece scores. A GGUF "llama" vocabulary carries scores, and its encoder merges
// the adjacent pair whose result has the highest score. Scores that reproduce the merge
// order: a token scores minus the rank of the first merge that produces it. Tokens no merge
// produces (specials, bytes, single characters) score 0; they are never a merge result.
writeVocab('llama', llama.vocabById);
{
  const scores = new Float32Array(llama.vocabById.length);
  const seen = new Set();
  mergePairs(llama).forEach(([a, b], rank) => {
    const id = llama.vocabByString.get(llama.vocabById[a] + llama.vocabById[b]);
    if (!seen.has(id)) {
      seen.add(id);
      scores[id] = -(rank + 1);
    }
  });
  check(Math.max(...scores.map(Math.abs)) < 2 ** 24, 'scores must be exact in f32');
  fs.writeFileSync(path.join(out, 'llama.scores.f32'), Buffer.from(scores.buffer));
  console.log(`llama: ${llama.vocabById.length} tokens, ${llama.merges.size} merges, ${seen.size} merge results`);
}

// ---- corpus -------------------------------------------------------------------------

// mulberry32: a tiny seeded PRNG, so the corpus is the same on every run.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const hand = [
  // prose
  'Hello, BitNet!',
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  'This is a test sentence.',
  'grabbed',
  ' grabbed',
  '           grabbed',
  'In 1905, Einstein published four papers; each changed physics.',
  'Ternary weights (-1, 0, +1) need only 1.58 bits: log2(3) ≈ 1.585.',
  'She said, "It\'s fine." Then she left — quietly.',
  "don't can't won't I'm you're we've they'll she'd it's",
  "DON'T CAN'T I'M YOU'RE WE'VE THEY'LL SHE'D IT'S",
  "rock 'n' roll, O'Neil's 'quoted' text, ''double'' and ' s",
  "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'Ve 'M 'lL 'D",
  "'Tis 'Twas 'SUP 'REally 'LLama 'Vector 'Mom 'Dad 'sup 'really O'NEILL'S Y'ALL'RE",
  'e.g. i.e. etc. U.S.A. Mr. Smith vs. Mrs. Jones',
  'Question? Answer! Ellipsis... Interrobang?! (parenthetical) [bracketed] {braced}',
  // code
  'fn main() {\n    println!("Hello, world!");\n}\n',
  'def f(x):\n\treturn x ** 2  # square\n',
  'for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }',
  'const re = /^[a-z]+$/gi; // regex\nconsole.log(re.test("abc"));',
  '<html><body><p class="x">Hi &amp; bye</p></body></html>',
  '{"key": [1, 2.5, -3e10, true, null], "nested": {"a": "b"}}',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name;',
  '    indented four\n        indented eight\n\tTabbed\n',
  'x=1;y=2;z=x+y\nif z>2:print(z)\r\nelse:pass',
  'a->b; c=>d; e::f; g<<=1; h>>>=2; i!==j; k||l&&m',
  '#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n',
  '$ cargo test --release -- --nocapture 2>&1 | tee log.txt',
  'https://example.com/path?query=1&other=two#frag',
  'user@example.org, @handle, #hashtag, 100% sure',
  // numbers
  '0', '7', '42', '123', '1234', '12345', '123456', '1234567', '12345678901234567890',
  '3.14159265358979', '1,000,000', '2024-05-01T12:34:56Z', '0x1F 0b1010 0o755', '+1 (555) 010-9999',
  '$12.99 €5,00 £3 ¥100', '50% of 200 is 100.', '1st 2nd 3rd 4th 21st 100th', 'v1.2.3-rc.4+build.5',
  'a1b22c333d4444e55555', '٣٤٥ ١٢ ۱۲۳ ０１２３ ⅠⅡⅢⅫ ²³¹ ½ ¼', '1e-9 6.022e23 -0.0 NaN Inf',
  // whitespace
  ' ', '  ', '   ', '    ', '\t', '\n', '\n\n', '\n\n\n', ' \n', '\n ', ' \n ', '\r\n', '\r\n\r\n', '\r',
  'a b', 'a  b', 'a   b', 'a\tb', 'a\t\tb', 'a \tb', 'a\t b', 'a\nb', 'a\n\nb', 'a \n b', 'a  \n  b',
  '  leading', 'trailing  ', '  both  ', '\n\nleading newlines', 'trailing newlines\n\n',
  'tabs\t\t\tand\t\tspaces   mixed \t \t end', 'line1\nline2\r\nline3\rline4',
  'word\u00a0nbsp\u2009thin\u3000ideographic\u2003em\u202fnarrow',
  '\u00a0', '\u3000\u3000', 'x\u2028y\u2029z', '\u000b\u000c', 'end with nbsp\u00a0',
  '!\n', ' !\n\n', '...\r\n', ' ?!\n\n\nx',
  // accents and scripts
  'café naïve résumé coöperate Ångström Straße São Paulo Zürich',
  'e\u0301 a\u0308 n\u0303: combining marks',
  'Ελληνικά: Γειά σου Κόσμε', 'Русский текст: Привет, мир!', 'Українська мова ї є ґ',
  'עברית: שלום עולם', 'العربية: مرحبا بالعالم', 'हिन्दी: नमस्ते दुनिया', 'ไทย: สวัสดีชาวโลก',
  'Tiếng Việt: Xin chào thế giới', 'Türkçe: İstanbul ığdır', 'Polski: zażółć gęślą jaźń',
  'ქართული ენა', 'Հայերեն', 'አማርኛ', 'ᠮᠣᠩᠭᠣᠯ', 'ꙊꙋꙌ',
  // CJK
  '你好，世界！', '镇', '日本語のテキストです。カタカナ、ひらがな。', '한국어 문장입니다.',
  '中文English混合text混合', '東京2024年オリンピック', '「引用」『二重』【括弧】',
  // emoji
  '🦙', '🦙Ꙋ', 'Ꙋ🦙', '👍🏽', '👨‍👩‍👧‍👦', '🇯🇵🇺🇸', '❤️', '😀😃😄😁', 'I ❤️ 🍕 and 🐍!', '🦙🦙🦙 llamas',
  // special-token text
  '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>',
  'Hello<|eot_id|>world', 'a<|eot_id|><|eot_id|>b', ' <|eot_id|> ', '<|reserved_special_token_5|>',
  '<|reserved_special_token_247|><|reserved_special_token_248|>', '<|not_special|>', '<|eot_id', 'eot_id|>',
  '<s>', '</s>', '<unk>', '<s> hello </s>', '[INST] question [/INST]', '<0x0A>',
  'System: You are a helpful AI assistant.<|eot_id|>User: Hello<|eot_id|>Assistant: ',
  '<|begin_of_text|>System: Be brief.<|eot_id|>User: What is 2+2?<|eot_id|>Assistant: ',
  // misc symbols
  '©®™ §¶ †‡ •·… ‰ ′″ ←→↑↓ ∀∃∈∉ ∑∏√∞ ≤≥≠≈ ⊂⊃∪∩', '─│┌┐└┘├┤ ░▒▓█', '♠♣♥♦ ♪♫ ☀☁☂ ✓✗',
  '__init__ __name__ ___triple___', '----====####****', '!!!???...,,,;;;:::',
  'ALLCAPS lowercase MixedCase camelCase snake_case kebab-case',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'abababababababababab', '..........', '          x',
];

// Fragments mixed at random: they stress transitions between character classes.
const pools = [
  'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', '0123456789',
  ' ', ' ', ' ', '  ', '\t', '\n', '\r\n', '.,;:!?\'"()[]{}<>-_=+*/\\|@#$%^&~`',
  'àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿ', 'αβγδεζηθικλμνξοπρστυφχψω', 'абвгдежзийклмнопрстуфхцчшщъыьэюя',
  '的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年', 'あいうえおかきくけこさしすせそ', 'アイウエオカキクケコ',
  '가나다라마바사아자차카타파하', '🦙😀🎉👍🏽🚀❤️🇯🇵', '\u0301\u0308\u0303', '٠١٢٣٤٥٦٧٨٩', '²³¹¼½¾ⅠⅡⅢ',
  '\u00a0\u2009\u3000\u2003', '→←↑↓∑∏√∞≤≥≠', "'s't're've'm'll'd", '<|eot_id|>',
];
const words = ['the', 'token', 'BitNet', 'ternary', 'weights', 'model', 'llama', 'über', 'naïve',
  '数据', 'テスト', '모델', 'Привет', 'λόγος', 'x86_64', 'riscv64', '1.58', '2B4T', 'I/O', "it's"];

const r = rng(0xb17e7);
const pick = (arr) => arr[Math.floor(r() * arr.length)];
const generated = [];
for (let i = 0; i < 300; i++) {
  const parts = [];
  const n = 1 + Math.floor(r() * 24);
  for (let j = 0; j < n; j++) {
    if (r() < 0.4) {
      parts.push(pick(words));
    } else {
      const chars = Array.from(pick(pools));
      const len = 1 + Math.floor(r() * 6);
      for (let k = 0; k < len; k++) parts.push(pick(chars));
    }
    if (r() < 0.5) parts.push(' ');
  }
  generated.push(parts.join(''));
}

// One long text: every handwritten string, joined.
const long = hand.join(' ').repeat(3);

const texts = [...hand, ...generated, long];
for (const t of texts) {
  // ECMAScript's \s differs from Unicode White_Space (what llama.cpp and Hugging Face use)
  // on exactly these two code points; the corpus avoids them, see tokenizer/pretok.rs.
  check(!t.includes('\u0085') && !t.includes('\ufeff'), `corpus text contains U+0085 or U+FEFF: ${JSON.stringify(t)}`);
  check(t === t.toWellFormed(), 'corpus text has a lone surrogate');
}
check(new Set(texts).size === texts.length, 'duplicate corpus texts');

const corpus = texts.map((text) => {
  const ids3 = llama3.encode(text, { bos: false, eos: false });
  // llama-tokenizer-js: encode(text, add_bos_token, add_preceding_space); no BOS, with the
  // SentencePiece space prefix, which is what a GGUF "llama" vocabulary adds by default.
  const ids = llama.encode(text, false, true);
  check(llama3.decode(ids3) === text, `llama3 round trip failed on ${JSON.stringify(text)}`);
  return { text, llama3: ids3, llama: ids };
});
// Compact but diffable: one case per line.
fs.writeFileSync(path.join(out, 'corpus.json'), '[\n' + corpus.map((c) => JSON.stringify(c)).join(',\n') + '\n]\n');
console.log(`corpus: ${corpus.length} texts, ${texts.reduce((a, t) => a + Buffer.byteLength(t), 0)} bytes`);
