#!/usr/bin/env python3
"""Encode throughput of HF tokenizers (Rust) on the corpus of bench/bench_tokenizer, and the ratio
kvprime / HF. Run on the GPU machine's CPU, on the same machine as the C++ benchmark:

    build/bench/bench_tokenizer --corpus-out /tmp/corpus.json --json-out /tmp/kvprime_bench.json
    python3 tools/bench_tokenizer_hf.py --corpus /tmp/corpus.json --cpp-results /tmp/kvprime_bench.json

Single-thread numbers (a loop of Tokenizer.encode, one document at a time, add_special_tokens=True)
are the comparison; encode_batch (Rayon, all cores) is printed for information. The token counts of
both sides are compared too (they must be equal: same ids).
"""
import argparse
import json
import os
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="JSON list of documents (bench_tokenizer --corpus-out)")
    ap.add_argument("--cpp-results", help="bench_tokenizer --json-out file, to print the ratio")
    ap.add_argument("--npm-dir", default=os.environ.get("KVPRIME_NPM_DIR", os.path.join(ROOT, "third_party", "npm")))
    ap.add_argument("--names", default="llama2,llama3,qwen3,gemma3")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import tokenizers
    from tokenizers import Tokenizer

    with open(args.corpus, encoding="utf-8") as f:
        docs = json.load(f)
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    cpp = None
    if args.cpp_results:
        with open(args.cpp_results) as f:
            cpp = json.load(f)
        if cpp.get("corpus_bytes") != nbytes:
            print(f"warning: corpus sizes differ (C++ {cpp.get('corpus_bytes')} vs {nbytes} bytes)")
    print(f"tokenizers {tokenizers.__version__}; corpus {len(docs)} documents, {nbytes} bytes; "
          f"cpus {os.cpu_count()}")
    print(f"{'name':8} {'load_s':>7} {'tokens':>9} {'cold_MB/s':>10} {'warm_MB/s':>10} {'batch_MB/s':>11} {'kvprime/HF':>11}")
    out = {}
    for name in args.names.split(","):
        path = os.path.join(args.npm_dir, name, "tokenizer.json")
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(path)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        ntok = sum(len(tok.encode(d).ids) for d in docs)
        cold = time.perf_counter() - t0
        warm = min(_timed(lambda: [tok.encode(d) for d in docs]) for _ in range(args.reps))
        batch = min(_timed(lambda: tok.encode_batch(docs)) for _ in range(args.reps))
        row = {"load_s": load, "tokens": ntok, "cold_MBps": nbytes / cold / 1e6,
               "warm_MBps": nbytes / warm / 1e6, "batch_MBps": nbytes / batch / 1e6}
        ratio = ""
        if cpp and name in cpp:
            ratio = f"{cpp[name]['warm_MBps'] / row['warm_MBps']:.2f}x"
            if cpp[name]["tokens"] != ntok:
                ratio += f" (TOKEN COUNT DIFFERS: {cpp[name]['tokens']} vs {ntok})"
        print(f"{name:8} {load:7.2f} {ntok:9d} {row['cold_MBps']:10.2f} {row['warm_MBps']:10.2f} "
              f"{row['batch_MBps']:11.2f} {ratio:>11}")
        out[name] = row
    print(json.dumps(out))


def _timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
