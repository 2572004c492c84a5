// Reference token ids from @huggingface/tokenizers (tokenizers.js) for the tokenizer parity tests.
// Usage: node tokenizer_reference.mjs TOKENIZER_JSON CORPUS_JSONL OUT_JSONL
// Each output line is the JSON array of ids for the corresponding corpus line, special tokens included,
// with neither truncation nor padding.
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "node:fs";

const [tokenizerPath, corpusPath, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: node tokenizer_reference.mjs TOKENIZER_JSON CORPUS_JSONL OUT_JSONL");
  process.exit(2);
}
const tokenizer = new Tokenizer(JSON.parse(fs.readFileSync(tokenizerPath, "utf8")), {});
const lines = fs.readFileSync(corpusPath, "utf8").split("\n").filter((l) => l.length > 0);
const out = lines.map((l) => JSON.stringify(tokenizer.encode(JSON.parse(l)).ids));
fs.writeFileSync(outPath, out.join("\n") + "\n");
