#!/usr/bin/env python3
"""Dump Hugging Face transformers' RoPE frequencies for kvprime's parity test.

For every tests/fixtures/configs/<stem>.config.json, and for the small SYNTHETIC_CONFIGS below
(RoPE types the real configs lack: yarn, dynamic, legacy "type"), this script
  1. loads the config the way users do (AutoConfig.from_pretrained on a directory holding it) and
     takes the language model's config (text_config for Gemma3ForConditionalGeneration),
  2. instantiates only the model's rotary embedding module (LlamaRotaryEmbedding, ...,
     Gemma3RotaryEmbedding) on the CPU,
  3. records, per layer type, inv_freq, attention_scaling and the cos/sin the module returns for
     positions POSITIONS,
and writes tests/fixtures/rope/hf_inv_freq.safetensors:
  tensors   "<stem>/<layer_type>/inv_freq"          [rotary_dim / 2] float32, as initialised
            "<stem>/<layer_type>/inv_freq_forward"  the buffer after the forward below (dynamic
                                                    RoPE regrows it for positions past the context)
            "<stem>/<layer_type>/cos"               [len(POSITIONS), rotary_dim] float32
            "<stem>/<layer_type>/sin"               [len(POSITIONS), rotary_dim] float32
  metadata  "entries":   JSON {"<stem>/<layer_type>": {"attention_scaling", "rope_type", ...}}
            "configs":   JSON {"<stem>": resolved HF fields: head_dim, heads, layer_types, ...;
                         synthetic configs also carry their config.json as "config_json"}
            "positions": JSON list, "torch_version", "transformers_version", "format".
tests/parity/test_rope_reference.cpp compares kvprime's frequencies against this file.

Written for transformers 5.x (Gemma 3's rotary module holds full_attention_inv_freq and
sliding_attention_inv_freq and takes a layer_type); transformers 4.x (one rotary module, Gemma 3's
local one built from a config copy with rope_local_base_freq) is handled as a fallback.

Usage: python3 tools/dump_rope_reference.py [--configs DIR] [--out FILE]
Needs torch, transformers and safetensors; no network, no model weights.
"""

import argparse
import copy
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig

POSITIONS = [0, 1, 7, 100, 5000]

# model_type of the language model -> (transformers.models package, rotary embedding class)
ROTARY_CLASSES = {
    "llama": ("llama", "LlamaRotaryEmbedding"),
    "mistral": ("mistral", "MistralRotaryEmbedding"),
    "qwen2": ("qwen2", "Qwen2RotaryEmbedding"),
    "qwen3": ("qwen3", "Qwen3RotaryEmbedding"),
    "gemma2": ("gemma2", "Gemma2RotaryEmbedding"),
    "gemma3_text": ("gemma3", "Gemma3RotaryEmbedding"),
}

# Small models (sizes do not matter for RoPE) exercising what the real configs do not:
# yarn (default attention factor, explicit attention_factor, DeepSeek mscale, beta, truncate),
# dynamic NTK past max_position_embeddings (POSITIONS reach 5000 > 2048), the legacy "type" key,
# and yarn on Gemma 3's full-attention layers.
SYNTHETIC_CONFIGS = {
    "synthetic-qwen2-yarn": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 512,
        "intermediate_size": 1024, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "max_position_embeddings": 131072, "rope_theta": 1000000.0,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                         "original_max_position_embeddings": 32768},
    },
    "synthetic-llama-yarn-mscale": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
        "intermediate_size": 512, "num_attention_heads": 2, "num_key_value_heads": 1,
        "num_hidden_layers": 2, "max_position_embeddings": 163840, "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "yarn", "factor": 40.0, "mscale": 1.0,
                         "mscale_all_dim": 0.8, "beta_fast": 16, "beta_slow": 2,
                         "original_max_position_embeddings": 4096, "truncate": False},
    },
    "synthetic-llama-yarn-attention-factor": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
        "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 4,
        "num_hidden_layers": 2, "max_position_embeddings": 65536, "rope_theta": 500000.0,
        "rope_scaling": {"type": "yarn", "factor": 8.0, "attention_factor": 1.2,
                         "original_max_position_embeddings": 8192},
    },
    "synthetic-llama-dynamic": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
        "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "max_position_embeddings": 2048, "rope_theta": 10000.0,
        "rope_scaling": {"type": "dynamic", "factor": 2.0},
    },
    "synthetic-mistral-linear-legacy": {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 256,
        "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 2, "max_position_embeddings": 8192, "rope_theta": 1000000.0,
        "sliding_window": None, "rope_scaling": {"type": "linear", "factor": 4.0},
    },
    "synthetic-gemma3-yarn": {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 256,
        "intermediate_size": 512, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 128, "num_hidden_layers": 6, "max_position_embeddings": 65536,
        "rope_scaling": {"rope_type": "yarn", "factor": 8.0,
                         "original_max_position_embeddings": 8192},
    },
}

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_text_config(config_json: dict):
    """AutoConfig as from_pretrained sees the file; the language model's part of it."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config_json, f)
        config = AutoConfig.from_pretrained(tmp)
    if hasattr(config, "get_text_config"):
        return config.get_text_config()
    return getattr(config, "text_config", config)


def rotary_class(model_type: str):
    if model_type not in ROTARY_CLASSES:
        raise SystemExit(f"no rotary class known for model_type {model_type!r}")
    package, name = ROTARY_CLASSES[model_type]
    module = importlib.import_module(f"transformers.models.{package}.modeling_{package}")
    return getattr(module, name)


def forward(rotary, head_dim: int, layer_type=None):
    """cos, sin of the module for POSITIONS, as the model's forward calls it. [T, rotary_dim]"""
    # forward only reads x's device and dtype
    x = torch.zeros(1, 1, len(POSITIONS), head_dim, dtype=torch.float32)
    position_ids = torch.tensor([POSITIONS], dtype=torch.long)
    with torch.no_grad():
        if layer_type is None:
            cos, sin = rotary(x, position_ids)
        else:
            cos, sin = rotary(x, position_ids, layer_type=layer_type)
    return cos[0].float().contiguous(), sin[0].float().contiguous()


def rope_type_of(rotary, layer_type):
    rope_type = getattr(rotary, "rope_type", None)
    if isinstance(rope_type, dict):
        return rope_type.get(layer_type)
    return rope_type


def snapshot(module, layer_type=None):
    """(inv_freq, attention_scaling) as initialised, copied before forward may regrow them."""
    prefix = f"{layer_type}_" if layer_type else ""
    inv_freq = getattr(module, f"{prefix}inv_freq").detach().to("cpu", torch.float32).clone()
    return inv_freq, float(getattr(module, f"{prefix}attention_scaling"))


def entries_for(text_config, head_dim: int):
    """{layer_type: (inv_freq, attention_scaling, rope_type, cos, sin, inv_freq_forward)}"""
    model_type = text_config.model_type
    cls = rotary_class(model_type)
    rotary = cls(config=text_config)
    layer_types = list(getattr(text_config, "layer_types", None) or [])
    out = {}

    per_type = [lt for lt in sorted(set(layer_types)) if hasattr(rotary, f"{lt}_inv_freq")]
    if per_type:
        # transformers 5 Gemma 3: one module, buffers and scaling per layer type.
        for lt in per_type:
            inv_freq, scaling = snapshot(rotary, lt)
            cos, sin = forward(rotary, head_dim, layer_type=lt)
            after, _ = snapshot(rotary, lt)
            out[lt] = (inv_freq, scaling, rope_type_of(rotary, lt), cos, sin, after)
        return out

    if model_type == "gemma3_text":
        # transformers 4.x Gemma 3: global module from the config, local module from a copy with
        # rope_theta = rope_local_base_freq and default RoPE (Gemma3TextModel.__init__).
        local_config = copy.deepcopy(text_config)
        local_config.rope_theta = text_config.rope_local_base_freq
        local_config.rope_scaling = {"rope_type": "default"}
        local = cls(config=local_config)
        for lt, module in (("full_attention", rotary), ("sliding_attention", local)):
            inv_freq, scaling = snapshot(module)
            cos, sin = forward(module, head_dim)
            after, _ = snapshot(module)
            out[lt] = (inv_freq, scaling, rope_type_of(module, lt), cos, sin, after)
        return out

    # One rotary embedding for every layer; recorded under each layer type the model has.
    inv_freq, scaling = snapshot(rotary)
    cos, sin = forward(rotary, head_dim)
    after, _ = snapshot(rotary)
    for lt in sorted(set(layer_types)) or ["full_attention"]:
        out[lt] = (inv_freq, scaling, rope_type_of(rotary, lt), cos, sin, after)
    return out


def jsonable(value):
    """rope_parameters and friends as plain JSON (dicts, lists, numbers, strings)."""
    return json.loads(json.dumps(value, default=str))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=Path, default=REPO_ROOT / "tests/fixtures/configs")
    parser.add_argument("--out", type=Path,
                        default=REPO_ROOT / "tests/fixtures/rope/hf_inv_freq.safetensors")
    args = parser.parse_args()

    torch.set_default_dtype(torch.float32)
    files = sorted(args.configs.glob("*.config.json"))
    if not files:
        raise SystemExit(f"no *.config.json in {args.configs}")

    sources = [(p.name[: -len(".config.json")], json.loads(p.read_text()), False) for p in files]
    sources += [(stem, cfg, True) for stem, cfg in SYNTHETIC_CONFIGS.items()]

    tensors, entries, configs = {}, {}, {}
    for stem, config_json, synthetic in sources:
        text = load_text_config(config_json)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        layer_types = getattr(text, "layer_types", None)
        configs[stem] = {
            "model_type": text.model_type,
            "head_dim": head_dim,
            "hidden_size": text.hidden_size,
            "num_attention_heads": text.num_attention_heads,
            "num_key_value_heads": text.num_key_value_heads,
            "num_hidden_layers": text.num_hidden_layers,
            "max_position_embeddings": text.max_position_embeddings,
            "sliding_window": getattr(text, "sliding_window", None),
            "layer_types": list(layer_types) if layer_types is not None else None,
            "rope_parameters": jsonable(getattr(text, "rope_parameters", None)),
            "rope_scaling": jsonable(getattr(text, "rope_scaling", None)),
        }
        if synthetic:
            configs[stem]["config_json"] = config_json
        for lt, (inv_freq, scaling, rope_type, cos, sin, after) in entries_for(text, head_dim).items():
            key = f"{stem}/{lt}"
            # clone: layer types of one module share tensors, which safetensors refuses to save
            tensors[f"{key}/inv_freq"] = inv_freq.clone()
            tensors[f"{key}/inv_freq_forward"] = after.clone()
            tensors[f"{key}/cos"] = cos.clone()
            tensors[f"{key}/sin"] = sin.clone()
            entries[key] = {
                "config": stem,
                "layer_type": lt,
                "rope_type": rope_type,
                "attention_scaling": scaling,
                "rotary_dim": 2 * tensors[f"{key}/inv_freq"].numel(),
            }
            print(f"{key:45s} {str(rope_type):8s} rotary_dim {entries[key]['rotary_dim']:4d} "
                  f"scaling {float(scaling):.6f} inv_freq[-1] {tensors[f'{key}/inv_freq'][-1]:.6e}")

    metadata = {
        "format": "kvprime-rope-reference/1",
        "positions": json.dumps(POSITIONS),
        "entries": json.dumps(entries, sort_keys=True),
        "configs": json.dumps(configs, sort_keys=True),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out), metadata=metadata)
    print(f"wrote {len(tensors)} tensors for {len(configs)} configs to {args.out} "
          f"(torch {torch.__version__}, transformers {transformers.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
