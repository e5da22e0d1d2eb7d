#!/usr/bin/env python3
"""Validate a kvprime QA dataset in JSONL (data/demo/README.md describes the format).

Checks: required fields and types, unique ids, passage 40-120 words, answer 1-8 words, answer
found in the passage (case-insensitive) unless "answer_in_passage": false is given explicitly,
2-3 surrogates, 1-2 irrelevant ids that exist and are not the sample itself, split in
{train, heldout}, held-out passages not repeated in train, minimum counts.
Usage: validate_dataset.py data/demo/qa.jsonl [--min-samples 200] [--min-heldout 60]
Exit status 1 on any error. Standard library only.
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--min-samples", type=int, default=200)
    ap.add_argument("--min-heldout", type=int, default=60)
    args = ap.parse_args()
    errors, rows = [], []
    with open(args.path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append((ln, json.loads(line)))
            except json.JSONDecodeError as e:
                errors.append(f"line {ln}: bad JSON: {e}")
    ids = {}
    for ln, r in rows:
        where = f"line {ln} ({r.get('id', '?')})"
        for k, t in (("id", str), ("passage", str), ("query", str), ("answer", str), ("surrogates", list),
                     ("irrelevant", list), ("split", str)):
            if not isinstance(r.get(k), t):
                errors.append(f"{where}: field {k!r} missing or not {t.__name__}")
        if errors and errors[-1].startswith(where):
            continue
        if r["id"] in ids:
            errors.append(f"{where}: duplicate id (also line {ids[r['id']]})")
        ids[r["id"]] = ln
        nw = len(r["passage"].split())
        if not 40 <= nw <= 120:
            errors.append(f"{where}: passage has {nw} words (40-120)")
        na = len(r["answer"].split())
        if not 1 <= na <= 8:
            errors.append(f"{where}: answer has {na} words (1-8)")
        if r.get("answer_in_passage", True) and r["answer"].lower() not in r["passage"].lower():
            errors.append(f"{where}: answer {r['answer']!r} not found in passage")
        if not r["query"].strip() or r["query"].strip().lower() in r["passage"].lower():
            errors.append(f"{where}: query is empty or copied from the passage")
        if not 2 <= len(r["surrogates"]) <= 3 or not all(isinstance(s, str) and s.strip() for s in r["surrogates"]):
            errors.append(f"{where}: need 2-3 non-empty surrogate queries")
        if r["split"] not in ("train", "heldout"):
            errors.append(f"{where}: split {r['split']!r} not in train/heldout")
    for ln, r in rows:
        irr = r.get("irrelevant")
        if isinstance(irr, list):
            if not 1 <= len(irr) <= 2:
                errors.append(f"line {ln}: need 1-2 irrelevant ids")
            for i in irr:
                if i not in ids or i == r.get("id"):
                    errors.append(f"line {ln}: irrelevant id {i!r} unknown or self")
    held = {r["passage"] for _, r in rows if r.get("split") == "heldout"}
    for ln, r in rows:
        if r.get("split") == "train" and r.get("passage") in held:
            errors.append(f"line {ln}: train passage repeats a held-out passage")
    n_held = sum(r.get("split") == "heldout" for _, r in rows)
    if len(rows) < args.min_samples:
        errors.append(f"{len(rows)} samples < {args.min_samples}")
    if n_held < args.min_heldout:
        errors.append(f"{n_held} held-out samples < {args.min_heldout}")
    for e in errors:
        print("ERROR:", e)
    wc = [len(r["passage"].split()) for _, r in rows if isinstance(r.get("passage"), str)]
    print(f"{args.path}: {len(rows)} samples ({len(rows) - n_held} train, {n_held} heldout), passage words "
          f"{min(wc)}-{max(wc)} (mean {sum(wc) / len(wc):.0f}); {len(errors)} errors")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
