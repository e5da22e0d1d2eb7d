#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/<name>.golden.json with HF `tokenizers` (the authority).

Run on the GPU machine (Python 3.12, tokenizers 0.23.2, transformers 5.x) after
scripts/fetch_tokenizers.sh:

    python3 tools/make_tokenizer_goldens.py            # all four, overwrites the JS goldens
    python3 tools/make_tokenizer_goldens.py --names qwen3 --no-transformers

For each string of tests/fixtures/tokenizer/strings.json it records, from
tokenizers.Tokenizer.from_file(tokenizer.json) (no tokenizer_config.json involved):
  ids                  encode(text, add_special_tokens=True).ids
  ids_no_special       encode(text, add_special_tokens=False).ids
  tokens, offsets      of the add_special_tokens=True encoding; offsets are CHARACTER (code point)
                       offsets, as the Python binding reports them
  decode               decode(ids, skip_special_tokens=False)
  decode_skip_special  decode(ids, skip_special_tokens=True)
and, informational only (the C++ test does not assert it), transformers' AutoTokenizer loaded from
the directory (tokenizer.json + tokenizer_config.json): transformers_ids per case and a summary of
how many differ from `ids`.
"""
import argparse
import hashlib
import json
import os
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
NAMES = ["llama2", "llama3", "qwen3", "gemma3"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def transformers_ids(model_dir, strings):
    """ids from transformers' AutoTokenizer, or (None, reason)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir)
        ids = [list(tok(s, add_special_tokens=True)["input_ids"]) for s in strings]
        return ids, {"version": transformers.__version__, "class": type(tok).__name__}
    except Exception as e:  # noqa: BLE001 - informational only
        return None, {"error": f"{type(e).__name__}: {e}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npm-dir", default=os.environ.get("KVPRIME_NPM_DIR", os.path.join(ROOT, "third_party", "npm")))
    ap.add_argument("--strings", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer", "strings.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer"))
    ap.add_argument("--names", default=",".join(NAMES))
    ap.add_argument("--no-transformers", action="store_true", help="skip the informational transformers ids")
    args = ap.parse_args()

    import tokenizers
    from tokenizers import Tokenizer

    with open(args.strings, encoding="utf-8") as f:
        strings = json.load(f)
    assert isinstance(strings, list) and all(isinstance(s, str) for s in strings), "strings.json must be a list of strings"
    generator = f"hf-tokenizers {tokenizers.__version__}"
    os.makedirs(args.out, exist_ok=True)

    for name in args.names.split(","):
        model_dir = os.path.join(args.npm_dir, name)
        tj = os.path.join(model_dir, "tokenizer.json")
        if not os.path.exists(tj):
            sys.exit(f"{tj} is missing: run scripts/fetch_tokenizers.sh first")
        tok = Tokenizer.from_file(tj)
        cases = []
        for s in strings:
            enc = tok.encode(s, add_special_tokens=True)
            enc_ns = tok.encode(s, add_special_tokens=False)
            ids = list(enc.ids)
            cases.append({
                "text": s,
                "ids": ids,
                "ids_no_special": list(enc_ns.ids),
                "tokens": list(enc.tokens),
                "offsets": [[int(b), int(e)] for b, e in enc.offsets],
                "decode": tok.decode(ids, skip_special_tokens=False),
                "decode_skip_special": tok.decode(ids, skip_special_tokens=True),
            })
        golden = {
            "generator": generator,
            "tokenizer": name,
            "tokenizer_json_sha256": sha256(tj),
            "has_offsets": True,
            "offsets_unit": "characters (code points) of the input string",
            "has_decode": True,
            "python": sys.version.split()[0],
            "cases": cases,
        }
        if not args.no_transformers:
            tids, info = transformers_ids(model_dir, strings)
            golden["transformers"] = info
            if tids is not None:
                differ = 0
                for c, t in zip(cases, tids):
                    c["transformers_ids"] = t
                    differ += t != c["ids"]
                info["cases_differing_from_ids"] = differ
                print(f"  {name}: transformers {info['class']} differs from raw tokenizers on {differ}/{len(cases)} strings")
            else:
                print(f"  {name}: transformers not recorded ({info['error']})")
        out = os.path.join(args.out, f"{name}.golden.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(golden, f, ensure_ascii=False)
            f.write("\n")
        print(f"{out}: {len(cases)} cases ({generator})")


if __name__ == "__main__":
    main()
