#!/usr/bin/env node
// Provisional tokenizer goldens from the JS port of HF tokenizers (@huggingface/tokenizers),
// in the format of tools/make_tokenizer_goldens.py (which runs HF tokenizers itself and is the
// authority). Used for development before the GPU run and by the C++ differential test.
//
//   node tools/js_goldens.mjs [--strings FILE.json] [--out DIR] [--names llama2,llama3,...] [--force]
//
// Defaults: strings tests/fixtures/tokenizer/strings.json, out tests/fixtures/tokenizer.
// Tokenizers come from $KVPRIME_NPM_DIR or third_party/npm (scripts/fetch_tokenizers.sh).
// A golden written by the Python generator ("generator": "hf-tokenizers ...") is never overwritten
// unless --force is given. The JS port gives no offsets: "has_offsets" is false.
import fs from "fs";
import path from "path";
import crypto from "crypto";
import { fileURLToPath, pathToFileURL } from "url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const npmDir = process.env.KVPRIME_NPM_DIR || path.join(root, "third_party", "npm");
const stringsPath = opt("--strings", path.join(root, "tests", "fixtures", "tokenizer", "strings.json"));
const outDir = opt("--out", path.join(root, "tests", "fixtures", "tokenizer"));
const names = opt("--names", "llama2,llama3,qwen3,gemma3").split(",");
const force = args.includes("--force");

const pkgDir = path.join(npmDir, "js", "node_modules", "@huggingface", "tokenizers");
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8"));
const { Tokenizer } = await import(pathToFileURL(path.join(pkgDir, "dist", "tokenizers.mjs")).href);
const generator = `js ${pkg.name} ${pkg.version}`;

const strings = JSON.parse(fs.readFileSync(stringsPath, "utf8"));
fs.mkdirSync(outDir, { recursive: true });
for (const name of names) {
  const out = path.join(outDir, `${name}.golden.json`);
  if (!force && fs.existsSync(out)) {
    const old = JSON.parse(fs.readFileSync(out, "utf8"));
    if (!String(old.generator || "").startsWith("js ")) {
      console.log(`${out}: written by "${old.generator}", kept (use --force to replace)`);
      continue;
    }
  }
  const tjText = fs.readFileSync(path.join(npmDir, name, "tokenizer.json"));
  const tj = JSON.parse(tjText.toString("utf8"));
  const tc = JSON.parse(fs.readFileSync(path.join(npmDir, name, "tokenizer_config.json"), "utf8"));
  const tok = new Tokenizer(tj, tc);
  // The JS port refuses an empty id list (HF returns ""); raw HF decode does no clean-up.
  const dec = (ids, skip) => (ids.length ? tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }) : "");
  const cases = strings.map((text) => {
    const withSpecial = tok.encode(text);
    const noSpecial = tok.encode(text, { add_special_tokens: false });
    return {
      text,
      ids: withSpecial.ids,
      ids_no_special: noSpecial.ids,
      tokens: withSpecial.tokens,
      decode: dec(withSpecial.ids, false),
      decode_skip_special: dec(withSpecial.ids, true),
    };
  });
  const golden = {
    generator,
    tokenizer: name,
    tokenizer_json_sha256: crypto.createHash("sha256").update(tjText).digest("hex"),
    has_offsets: false,
    has_decode: true,
    note: "provisional: JS port of HF tokenizers; regenerate with tools/make_tokenizer_goldens.py",
    cases,
  };
  fs.writeFileSync(out, JSON.stringify(golden) + "\n");
  console.log(`${out}: ${cases.length} cases (${generator})`);
}
