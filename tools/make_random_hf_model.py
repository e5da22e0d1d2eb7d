#!/usr/bin/env python3
"""Writes a random-weight Hugging Face checkpoint of a real model's shape (GPU machine).

The GPU machine has no network and no published weights. Numerics do not need trained weights
(every operation is checked against HF on the same weights), and speed only depends on shapes, so
a checkpoint of the published config with random weights stands in for the real model:

    python3 tools/make_random_hf_model.py \
        --config tests/fixtures/configs/mistral-7b-instruct-v0.2.config.json \
        --tokenizer third_party/npm/llama2 --dtype bfloat16 --out /tmp/mistral7b

writes OUT/config.json, OUT/model*.safetensors (HF save_pretrained, sharded) and copies
tokenizer.json / tokenizer_config.json from --tokenizer when given. Weights are initialised by
transformers' own init (normal, std = initializer_range) from --seed, directly in --dtype on
--device, so a 7B model takes ~15 GB of GPU memory for a few seconds and ~15 GB of disk.
"""
import argparse
import json
import os
import shutil
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="a published config.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", help="directory with tokenizer.json (copied into --out)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-layers", type=int, help="override num_hidden_layers (smaller tests)")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    with open(args.config) as f:
        raw = json.load(f)
    if args.num_layers:
        raw["num_hidden_layers"] = args.num_layers
        if "layer_types" in raw:
            raw["layer_types"] = raw["layer_types"][: args.num_layers]
    os.makedirs(args.out, exist_ok=True)
    tmp_cfg = os.path.join(args.out, "source_config.json")
    with open(tmp_cfg, "w") as f:
        json.dump(raw, f)
    config = AutoConfig.from_pretrained(tmp_cfg)
    os.remove(tmp_cfg)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    t0 = time.time()
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(args.out, safe_serialization=True, max_shard_size="5GB")
    if args.tokenizer:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            src = os.path.join(args.tokenizer, name)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(args.out, name))
    print(f"make_random_hf_model: {type(model).__name__} {n_params / 1e9:.2f}B params {args.dtype} "
          f"-> {args.out} in {time.time() - t0:.1f}s (transformers {transformers.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
