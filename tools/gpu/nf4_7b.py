#!/usr/bin/env python3
"""Issue 11 measurement on the GPU machine, through the Python bindings (which share PyTorch's CUDA
allocator, so torch.cuda memory statistics count kvprime's tensors): a 7.24B Mistral-shaped model
in bfloat16, native vs NF4 weights: GPU memory after loading, peak during loading, and the
forward's tokens/s on HF's benchmark shape (32 x 160 random ids, logits at the last position).

    PYTHONPATH=build-gpu-py/python python3 tools/gpu/nf4_7b.py --model /tmp/mistral7b
"""
import argparse
import json
import time

import torch

import kvprime


def measure(path, weights, batch, seq, iters):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.time()
    m = kvprime.Model.load(path, dtype="bfloat16", device="cuda", weights=weights)
    torch.cuda.synchronize()
    load_s = time.time() - t0
    resident = torch.cuda.memory_allocated() - base
    load_peak = torch.cuda.max_memory_allocated() - base
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 32000, (batch, seq), generator=g).cuda()
    for _ in range(2):
        m.forward(ids, logits="last")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    for _ in range(iters):
        m.forward(ids, logits="last")
    torch.cuda.synchronize()
    dt = (time.time() - t0) / iters
    fwd_peak = torch.cuda.max_memory_allocated() - base
    out = {"weights": weights, "load_s": round(load_s, 1), "resident_GiB": round(resident / 2**30, 3),
           "load_peak_GiB": round(load_peak / 2**30, 3), "forward_ms": round(dt * 1e3, 1),
           "tokens_per_s": round(batch * seq / dt), "forward_peak_GiB": round(fwd_peak / 2**30, 3)}
    del m
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=160)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    print(torch.cuda.get_device_name(0), "torch", torch.__version__)
    rows = [measure(a.model, w, a.batch, a.seq, a.iters) for w in ("native", "nf4")]
    for r in rows:
        print(json.dumps(r))
    n, q = rows
    print(f"nf4 / native: resident memory {q['resident_GiB'] / n['resident_GiB']:.3f}x, "
          f"forward tokens/s {q['tokens_per_s'] / n['tokens_per_s']:.3f}x")


if __name__ == "__main__":
    main()
