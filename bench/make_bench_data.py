#!/usr/bin/env python3
"""Deterministic benchmark data for issue 7 (kvprime vs the seed on HF transformers).

Writes N JSONL samples {"id", "passage", "query", "answer", "surrogates", "source", "filler"} made
from data/demo/qa.jsonl, with passages of exactly --words words (default 75), the shape the seed's
experiments used (short passages, ~8-word queries, short answers):

  * sources: the demo samples whose answer has --min-answer-words..--max-answer-words words (3..6 by
    default: ~4 words on average) and whose fields are ASCII.  The seed skips answers of one token
    (it scores the answer tokens after the first); every word of the Llama-2 tokenizer is at least
    one token, so >= 2 words guarantees >= 2 tokens without needing a tokenizer here.  ASCII keeps
    character offsets (Python `tokenizers`) equal to byte offsets (kvprime) at the prefix/document
    boundary;
  * sample i uses source S[i % len(S)] in file order: its passage in full (the answer stays in the
    text; demo passages have 52-72 words), then the first words of a "filler" passage from another
    topic until --words words, ending with a period.  The filler and the first surrogate rotate with
    the round i // len(S), so repeated sources still give different (passage, surrogate) pairs;
  * query, answer and surrogates are the source's (surrogates rotated, see above).

Standard library only; the same arguments give byte-identical output.

    python3 bench/make_bench_data.py --out /tmp/bench.jsonl [--n 256] [--words 75]
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def ascii_row(r):
    texts = [r["passage"], r["query"], r["answer"], *r.get("surrogates", [])]
    return all(t.isascii() for t in texts)


def fill_passage(own, filler, n_words):
    """`own` in full, then words of `filler`, cut to n_words; the result ends a sentence."""
    words = own.split()
    if len(words) < n_words:
        words += filler.split()[: n_words - len(words)]
    words = words[:n_words]
    last = words[-1].rstrip(",;:-")
    words[-1] = last if last.endswith((".", "!", "?")) else last + "."
    return " ".join(words)


def describe(name, values):
    return (f"{name:<8} min {min(values):>3}  mean {statistics.mean(values):6.2f}  "
            f"median {statistics.median(values):5.1f}  max {max(values):>3}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=REPO / "data" / "demo" / "qa.jsonl")
    ap.add_argument("--out", type=Path, required=True, help="JSONL to write ('-' for stdout)")
    ap.add_argument("--n", type=int, default=256, help="number of samples (default 256)")
    ap.add_argument("--words", type=int, default=75, help="words per passage (default 75)")
    ap.add_argument("--min-answer-words", type=int, default=3)
    ap.add_argument("--max-answer-words", type=int, default=6)
    args = ap.parse_args(argv)
    if args.n <= 0 or args.words <= 0 or args.min_answer_words < 2:
        ap.error("--n and --words must be positive, --min-answer-words >= 2 (the seed scores tokens 2..)")

    rows = [r for r in load_rows(args.source) if ascii_row(r)]
    sources = [r for r in rows
               if args.min_answer_words <= len(r["answer"].split()) <= args.max_answer_words]
    if not sources:
        raise SystemExit(f"make_bench_data: no sample of {args.source} has an answer of "
                         f"{args.min_answer_words}-{args.max_answer_words} words")

    samples = []
    for i in range(args.n):
        rnd, j = divmod(i, len(sources))
        src = sources[j]
        pool = [r for r in rows if r.get("topic") != src.get("topic") and r["id"] != src["id"]] or \
               [r for r in rows if r["id"] != src["id"]] or rows
        # A stride co-prime with nothing in particular: spreads fillers over topics and rounds.
        filler = pool[(7 * j + 31 * rnd + 1) % len(pool)]
        surr = list(src.get("surrogates") or [src["query"]])
        k = rnd % len(surr)
        samples.append({
            "id": f"b{i:04d}-{src['id']}",
            "passage": fill_passage(src["passage"], filler["passage"], args.words),
            "query": src["query"],
            "answer": src["answer"],
            "surrogates": surr[k:] + surr[:k],
            "source": src["id"],
            "filler": filler["id"],
        })

    text = "".join(json.dumps(s, ensure_ascii=True) + "\n" for s in samples)
    if str(args.out) == "-":
        sys.stdout.write(text)
        log = sys.stderr
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        log = sys.stdout

    n_sources = len({s["source"] for s in samples})
    pairs = len({(s["passage"], s["surrogates"][0]) for s in samples})
    print(f"make_bench_data: {len(samples)} samples from {n_sources} source samples of {args.source.name} "
          f"({len(sources)} eligible: ASCII, answers of {args.min_answer_words}-{args.max_answer_words} "
          f"words); {len({s['passage'] for s in samples})} distinct passages, {pairs} distinct "
          f"(passage, surrogate) pairs -> {args.out}", file=log)
    for field in ("passage", "query", "answer"):
        print(describe(field, [len(s[field].split()) for s in samples]), file=log)
    print(describe("surr[0]", [len(s["surrogates"][0].split()) for s in samples]), file=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
