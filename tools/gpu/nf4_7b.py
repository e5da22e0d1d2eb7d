#!/usr/bin/env python3
"""Issue 11 measurement on the GPU machine, through the Python bindings (which share PyTorch's CUDA
allocator, so torch.cuda memory statistics count kvprime's tensors): a 7.24B Mistral-shaped model
in bfloat16, native vs NF4 vs NF4 with double quantization: GPU memory (GB = 1e9 bytes) after
loading, peak during loading, and per forward shape (HF's benchmark batch 32 x 160, one seed-sized
sequence 1 x 512; random ids, logits at the last position) the time, tokens/s and peak memory.

    PYTHONPATH=build-gpu-py/python python3 tools/gpu/nf4_7b.py --model /tmp/mistral7b
"""
import argparse
import json
import time

import torch

import kvprime


SHAPES = ((32, 160), (1, 512))   # HF's benchmark batch; one seed-sized sequence


def measure(path, weights, iters, profile=False):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.time()
    m = kvprime.Model.load(path, dtype="bfloat16", device="cuda", weights=weights)
    torch.cuda.synchronize()
    load_s = time.time() - t0
    resident = torch.cuda.memory_allocated() - base
    load_peak = torch.cuda.max_memory_allocated() - base
    out = {"weights": weights, "load_s": round(load_s, 1), "resident_GB": round(resident / 1e9, 3),
           "load_peak_GB": round(load_peak / 1e9, 3)}
    g = torch.Generator().manual_seed(0)
    for batch, seq in SHAPES:
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
        key = f"{batch}x{seq}"
        out[f"forward_ms_{key}"] = round(dt * 1e3, 2)
        out[f"tokens_per_s_{key}"] = round(batch * seq / dt)
        out[f"forward_peak_GB_{key}"] = round((torch.cuda.max_memory_allocated() - base) / 1e9, 3)
        if profile and weights != "native":
            # Where the GPU time goes (kvprime's kernels are seen by CUPTI like torch's own).
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                m.forward(ids, logits="last")
                torch.cuda.synchronize()
            print(f"{weights} {key}:")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=6, max_name_column_width=60))
        del ids
    del m
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of each NF4 forward")
    a = ap.parse_args()
    print(torch.cuda.get_device_name(0), "torch", torch.__version__)
    rows = [measure(a.model, w, a.iters, a.profile) for w in ("native", "nf4", "nf4-dq")]
    for r in rows:
        print(json.dumps(r))
    n = rows[0]
    for q in rows[1:]:
        speed = ", ".join(f"{b}x{s} {q[f'tokens_per_s_{b}x{s}'] / n[f'tokens_per_s_{b}x{s}']:.3f}x"
                          for b, s in SHAPES)
        print(f"{q['weights']} / native: resident memory {q['resident_GB'] / n['resident_GB']:.3f}x, "
              f"forward tokens/s {speed}")


if __name__ == "__main__":
    main()
