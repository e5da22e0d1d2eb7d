#!/usr/bin/env python3
"""Generate Hugging Face parity fixtures for kvprime.

For each supported architecture this script builds a tiny random-weight model with
Hugging Face transformers, saves it exactly as ``save_pretrained`` does (config.json +
model.safetensors), and records what transformers computes for a handful of inputs:
logits, the per-layer K/V cache contents, and per-row negative log-likelihoods.  The
kvprime C++ parity tests load the saved checkpoint, run the same inputs and compare.

Written against transformers 5.x (checked against the 5.17.0 source): configs use
``rope_parameters`` (``rope_theta`` lives inside it; Gemma3 keeps one dict per layer
type), ``save_pretrained`` always writes safetensors, ``from_pretrained`` takes
``dtype=``, and a ``DynamicCache`` exposes ``cache.layers[i].keys`` / ``.values``.

Everything runs in float32.  The reference numbers come from ``attn_implementation="eager"``;
the models are also run with ``"sdpa"`` and the difference is reported in MANIFEST.json only.

Usage (from the repository root, on a machine that has transformers installed):

    python3 tools/make_parity_fixtures.py --out tests/fixtures/parity [--device cpu|cuda]

See tools/README.md for the layout of the produced files.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import hashlib
import json
import math
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

# Bump whenever the layout / naming / meaning of the produced files changes (see tools/README.md).
FIXTURE_VERSION = "1"

# ---------------------------------------------------------------------------------------------
# Sizes shared by every model.  Kept tiny so that all fixtures together stay well under 8 MB.
# ---------------------------------------------------------------------------------------------
VOCAB = 512
HIDDEN = 64
INTERMEDIATE = 128
MAX_POS = 256  # must exceed the llama3 `original_max_position_embeddings` (HF warns otherwise)

# Input shapes.
BATCH = 2
SEQ = 24                 # "plain" length
PREFILL = 16             # "continue": prefill this many tokens, then feed the rest (SEQ - PREFILL)
PADDED_SHORT = 17        # "padded": row 1 has this many real tokens, left-padded to SEQ
POSITION_OFFSET = 5      # "positions": explicit position_ids POSITION_OFFSET .. POSITION_OFFSET+SEQ-1
LONG_SEQ = 40            # "long": only for models with sliding-window layers (window 8)
FIRST_TOKEN_ID = 3       # random ids are drawn from [FIRST_TOKEN_ID, VOCAB): 0/1/2 are pad/bos/eos-like

INPUT_SEED = 20240601

# Weight initialisation.  Large enough that activations/logits are far from zero, small enough
# that the attention softmax does not saturate.  Linear layers use std = LINEAR_GAIN / sqrt(fan_in)
# (0.2 for fan_in 64).
LINEAR_GAIN = 1.6
EMBED_STD_UNTIED = 1.0   # input embedding of untied models (normalised right away by the first norm)
EMBED_STD_TIED = 0.2     # tied embedding doubles as lm_head: logits std ~ 0.2 * sqrt(hidden) = 1.6
LM_HEAD_STD = 0.2
BIAS_STD = 0.3           # HF initialises biases to zero; we make them clearly nonzero
NORM_STD = 0.2           # plain RMSNorm:   weight = 1 + NORM_STD * randn
GEMMA_NORM_STD = 0.1     # Gemma RMSNorm computes x * (1 + w): w = GEMMA_NORM_STD * randn

# Tolerances for the self-consistency checks below (all float32).
TOL_SAME_PATH = 1e-5     # two ways of computing the very same thing (e.g. full vs sliding cache)
TOL_EQUIVALENT = 1e-4    # mathematically equal, different op order (cached decode vs full prefill)

MAX_TOTAL_BYTES = 8 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Model specifications
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelSpec:
    name: str                   # fixture directory name
    model_class: str            # transformers class, e.g. "LlamaForCausalLM"
    config_class: str           # transformers config class, e.g. "LlamaConfig"
    config_kwargs: dict[str, Any]
    seed: int                   # weight seed
    gemma_norm: bool = False    # RMSNorm weights are used as (1 + w)
    description: str = ""
    write_v4_config: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)


def _common(**overrides: Any) -> dict[str, Any]:
    """Config fields shared by every model; per-model values override them."""
    base: dict[str, Any] = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=MAX_POS,
        attention_dropout=0.0,
        use_cache=True,
    )
    base.update(overrides)
    return base


def gemma3_v4_config(v5: dict[str, Any]) -> dict[str, Any]:
    """Describe the gemma3 fixture model in the transformers 4.x config.json style.

    v4 stored the global RoPE base as `rope_theta`, the local (sliding) base as
    `rope_local_base_freq`, the global scaling as `rope_scaling`, and the layer pattern as
    `sliding_window_pattern` (layer i is sliding iff (i + 1) % pattern != 0).  transformers 5
    still accepts this form and converts it to `rope_parameters` / `layer_types`; main() checks
    that the conversion reproduces the v5 config and identical logits.
    """
    # Private keys (e.g. "_sliding_window_pattern", which v5 serialises with its unused default) and
    # the v5-only fields are dropped.
    out = {k: v for k, v in v5.items()
           if not k.startswith("_") and k not in ("rope_parameters", "layer_types", "dtype")}
    rp = v5["rope_parameters"]
    full, sliding = rp["full_attention"], rp["sliding_attention"]
    assert sliding["rope_type"] == "default", sliding
    out["rope_theta"] = full["rope_theta"]
    out["rope_local_base_freq"] = sliding["rope_theta"]
    scaling = {k: v for k, v in full.items() if k != "rope_theta"}
    out["rope_scaling"] = scaling if scaling.get("rope_type", "default") != "default" else None
    # Recover the pattern from layer_types and make sure it really is periodic.
    layer_types = v5["layer_types"]
    pattern = layer_types.index("full_attention") + 1
    expected = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(len(layer_types))]
    assert expected == layer_types, (layer_types, pattern)
    out["sliding_window_pattern"] = pattern
    if "dtype" in v5:
        out["torch_dtype"] = v5["dtype"]
    return out


def model_specs() -> list[ModelSpec]:
    return [
        ModelSpec(
            name="llama3",
            model_class="LlamaForCausalLM",
            config_class="LlamaConfig",
            seed=1001,
            description="Llama with llama3 RoPE scaling, GQA 4q/2kv, untied head",
            config_kwargs=_common(
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,
                hidden_act="silu",
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                attention_bias=False,
                mlp_bias=False,
                bos_token_id=1,
                eos_token_id=2,
                # original_max_position_embeddings=64 puts the 8 frequencies of head_dim 16 /
                # theta 5e5 into all three llama3 branches: i=0 (wavelength 6.3 < 64/4) kept,
                # i=1 (wavelength 32.4, between 16 and 64) smoothly interpolated, i>=2 divided by 8.
                rope_parameters={
                    "rope_type": "llama3",
                    "rope_theta": 500000.0,
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64,
                },
            ),
        ),
        ModelSpec(
            name="llama_yarn",
            model_class="LlamaForCausalLM",
            config_class="LlamaConfig",
            seed=1002,
            description="Llama with YaRN RoPE scaling (factor 4), plain MHA (4q/4kv)",
            config_kwargs=_common(
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=4,
                head_dim=16,
                hidden_act="silu",
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                bos_token_id=1,
                eos_token_id=2,
                # factor * original = max_position_embeddings, so HF's consistency check is quiet.
                # original=256 makes the YaRN correction range [0, 4], i.e. the ramp takes the
                # fractional values 0.25/0.5/0.75 instead of being a hard 0/1 switch.  The implied
                # attention factor 0.1*ln(4)+1 scales cos/sin.
                max_position_embeddings=1024,
                rope_parameters={
                    "rope_type": "yarn",
                    "rope_theta": 10000.0,
                    "factor": 4.0,
                    "original_max_position_embeddings": 256,
                },
            ),
        ),
        ModelSpec(
            name="mistral",
            model_class="MistralForCausalLM",
            config_class="MistralConfig",
            seed=1003,
            description="Mistral, MQA 4q/1kv, sliding window 8 on every layer, untied head",
            config_kwargs=_common(
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=1,
                head_dim=16,
                hidden_act="silu",
                rms_norm_eps=1e-5,
                sliding_window=8,
                tie_word_embeddings=False,
                bos_token_id=1,
                eos_token_id=2,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
        ),
        ModelSpec(
            name="qwen2",
            model_class="Qwen2ForCausalLM",
            config_class="Qwen2Config",
            seed=1004,
            description="Qwen2, q/k/v biases (randomised), tied embeddings, no sliding window",
            config_kwargs=_common(
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                hidden_act="silu",
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                use_sliding_window=False,
                bos_token_id=1,
                eos_token_id=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
        ),
        ModelSpec(
            name="qwen3",
            model_class="Qwen3ForCausalLM",
            config_class="Qwen3Config",
            seed=1005,
            description="Qwen3, head_dim 32 != hidden/heads (16), per-head q/k RMSNorm, untied head",
            config_kwargs=_common(
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=32,
                hidden_act="silu",
                rms_norm_eps=1e-6,
                tie_word_embeddings=False,
                attention_bias=False,
                use_sliding_window=False,
                bos_token_id=1,
                eos_token_id=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
        ),
        ModelSpec(
            name="gemma2",
            model_class="Gemma2ForCausalLM",
            config_class="Gemma2Config",
            seed=1006,
            gemma_norm=True,
            notes=["transformers' sdpa path ignores attn_logit_softcapping (only the eager kernel applies "
                   "it), so eager vs sdpa differ by O(1) here; the eager numbers are the reference"],
            description="Gemma2, attn softcap 5, final softcap 3, query_pre_attn_scalar 24, "
            "sliding/full alternating (window 8), tied, sqrt(hidden) embedding scale",
            config_kwargs=_common(
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,
                hidden_activation="gelu_pytorch_tanh",
                rms_norm_eps=1e-6,
                pad_token_id=0,
                eos_token_id=1,
                bos_token_id=2,
                tie_word_embeddings=True,
                attention_bias=False,
                query_pre_attn_scalar=24,
                sliding_window=8,
                # Gemma2's own default pattern, spelled out: even layers slide.
                layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                attn_logit_softcapping=5.0,
                final_logit_softcapping=3.0,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
        ),
        ModelSpec(
            name="gemma3",
            model_class="Gemma3ForCausalLM",
            config_class="Gemma3TextConfig",
            seed=1007,
            gemma_norm=True,
            description="Gemma3 text, layers 0-1 sliding (local RoPE 1e4), layer 2 full "
            "(RoPE 1e6, linear x8), head_dim 32 != hidden/heads, q/k norms, tied",
            write_v4_config=gemma3_v4_config,
            notes=["config.json carries '_sliding_window_pattern': 6, transformers' unused default; "
                   "layer_types is authoritative"],
            config_kwargs=_common(
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=32,
                hidden_activation="gelu_pytorch_tanh",
                rms_norm_eps=1e-6,
                pad_token_id=0,
                eos_token_id=1,
                bos_token_id=2,
                tie_word_embeddings=True,
                attention_bias=False,
                query_pre_attn_scalar=32,
                sliding_window=8,
                layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                attn_logit_softcapping=None,
                final_logit_softcapping=None,
                rope_parameters={
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                    "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                },
            ),
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
def fail(msg: str) -> None:
    raise SystemExit(f"make_parity_fixtures: ERROR: {msg}")


def check(cond: bool, msg: str) -> None:
    """Assert that survives `python -O`."""
    if not cond:
        fail(msg)


def check_shape(t: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    check(tuple(t.shape) == tuple(shape), f"{what}: expected shape {tuple(shape)}, got {tuple(t.shape)}")


def check_finite(t: torch.Tensor, what: str) -> None:
    check(bool(torch.isfinite(t).all()), f"{what}: contains NaN/Inf")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    check(a.shape == b.shape, f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.double() - b.double()).abs().max())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def linear_std(fan_in: int) -> float:
    return LINEAR_GAIN / math.sqrt(fan_in)


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------
def randomize_weights(model: torch.nn.Module, spec: ModelSpec) -> dict[str, int]:
    """Overwrite every parameter with seeded random values; returns a count per category.

    HF's own init is unsuitable for parity tests: norms start at exactly 1 (or 0 for Gemma),
    biases at 0 and linear weights at std 0.02, which would hide bugs in those code paths.
    `named_parameters()` lists a tied lm_head/embedding only once, so tying is preserved.
    """
    gen = torch.Generator().manual_seed(spec.seed)
    tied = bool(spec.config_kwargs.get("tie_word_embeddings", False))
    counts: dict[str, int] = {}

    def randn(shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                kind, value = "embedding", randn(p.shape) * (EMBED_STD_TIED if tied else EMBED_STD_UNTIED)
            elif name == "lm_head.weight":
                check(not tied, "tied model lists lm_head.weight as a separate parameter")
                kind, value = "lm_head", randn(p.shape) * LM_HEAD_STD
            elif "norm" in name.split(".")[-2] and p.ndim == 1:
                if spec.gemma_norm:
                    kind, value = "norm", randn(p.shape) * GEMMA_NORM_STD
                else:
                    kind, value = "norm", 1.0 + randn(p.shape) * NORM_STD
            elif name.endswith(".bias"):
                kind, value = "bias", randn(p.shape) * BIAS_STD
            elif name.endswith(".weight") and p.ndim == 2:
                kind, value = "linear", randn(p.shape) * linear_std(p.shape[1])
            else:
                fail(f"{spec.name}: don't know how to initialise parameter {name} {tuple(p.shape)}")
            check(p.dtype == torch.float32, f"{spec.name}: {name} is {p.dtype}, expected float32")
            p.copy_(value)
            counts[kind] = counts.get(kind, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------
# Running the model
# ---------------------------------------------------------------------------------------------
class Runner:
    """Thin wrapper: moves inputs to the device, runs without grad, returns CPU float32 results."""

    def __init__(self, model: torch.nn.Module, device: str, hf: Any):
        self.model = model
        self.device = device
        self.hf = hf
        cfg = model.config
        self.n_layers = cfg.num_hidden_layers
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.vocab = cfg.vocab_size

    def forward(self, input_ids: torch.Tensor, *, full_cache: bool = False, cache: Any = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> Any:
        """Forward pass with use_cache=True.

        full_cache=True passes a fresh `DynamicCache()` (no config): every layer then gets a plain
        `DynamicLayer` that keeps *all* positions, also for sliding-window layers.  Without it the
        model creates `DynamicCache(config=...)`, whose sliding layers keep only the last
        `sliding_window - 1` positions.  The attention result is the same either way (the window is
        enforced by the mask); compute_reference() checks that.
        """
        if full_cache:
            check(cache is None, "full_cache and cache are exclusive")
            cache = self.hf.DynamicCache()
        kw: dict[str, Any] = dict(input_ids=input_ids.to(self.device), use_cache=True)
        if cache is not None:
            kw["past_key_values"] = cache
        if attention_mask is not None:
            kw["attention_mask"] = attention_mask.to(self.device)
        if position_ids is not None:
            kw["position_ids"] = position_ids.to(self.device)
        if labels is not None:
            kw["labels"] = labels.to(self.device)
        with torch.no_grad():
            out = self.model(**kw)
        check(out.logits.dtype == torch.float32, f"logits dtype {out.logits.dtype}")
        check(out.past_key_values is not None, "model returned no cache although use_cache=True")
        if cache is not None:
            check(out.past_key_values is cache, "model replaced the cache object it was given")
        return out

    def logits(self, out: Any, batch: int, seq: int, what: str) -> torch.Tensor:
        lg = out.logits.detach().float().cpu().contiguous()
        check_shape(lg, (batch, seq, self.vocab), f"{what} logits")
        return lg

    def kv(self, cache: Any, batch: int, seq: int, what: str, full: bool = True) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """K and V of every layer, [batch, n_kv_heads, seq, head_dim] (keys after norm + RoPE)."""
        layers = getattr(cache, "layers", None)
        check(layers is not None, f"{what}: cache has no `.layers` (transformers < 5 API?)")
        check(len(layers) == self.n_layers, f"{what}: cache has {len(layers)} layers, model {self.n_layers}")
        ks, vs = [], []
        for i, layer in enumerate(layers):
            if full:
                check(not getattr(layer, "is_sliding", False), f"{what}: layer {i} is a sliding cache layer")
            k = layer.keys.detach().float().cpu().contiguous()
            v = layer.values.detach().float().cpu().contiguous()
            exp_seq = seq if full else k.shape[2]
            check_shape(k, (batch, self.n_kv, exp_seq, self.head_dim), f"{what} K layer {i}")
            check_shape(v, (batch, self.n_kv, exp_seq, self.head_dim), f"{what} V layer {i}")
            check_finite(k, f"{what} K layer {i}")
            check_finite(v, f"{what} V layer {i}")
            ks.append(k)
            vs.append(v)
        return ks, vs


def per_row_nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy per row: logits[:, :-1] predicting ids[:, 1:] (float64)."""
    b, s, v = logits.shape
    ce = F.cross_entropy(logits[:, :-1].double().reshape(-1, v), ids[:, 1:].reshape(-1), reduction="none")
    return ce.view(b, s - 1).mean(dim=1)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
@dataclass
class Inputs:
    plain: torch.Tensor            # [BATCH, SEQ]
    padded_ids: torch.Tensor       # [BATCH, SEQ], row 1 left-padded
    padded_mask: torch.Tensor      # [BATCH, SEQ] 1 = real token, 0 = pad
    padded_pos: torch.Tensor       # [BATCH, SEQ]
    positions_ids: torch.Tensor    # [1, SEQ]
    positions_pos: torch.Tensor    # [1, SEQ]
    long: torch.Tensor             # [1, LONG_SEQ]


def make_inputs(pad_id: int) -> Inputs:
    """Fixed token ids (same for every model except for the pad id)."""
    g = torch.Generator().manual_seed(INPUT_SEED)

    def ids(*shape: int) -> torch.Tensor:
        return torch.randint(FIRST_TOKEN_ID, VOCAB, shape, generator=g, dtype=torch.int64)

    plain = ids(BATCH, SEQ)
    row0 = ids(SEQ)
    row1 = ids(PADDED_SHORT)
    n_pad = SEQ - PADDED_SHORT
    padded_ids = torch.stack([row0, torch.cat([torch.full((n_pad,), pad_id, dtype=torch.int64), row1])])
    padded_mask = torch.ones(BATCH, SEQ, dtype=torch.int64)
    padded_mask[1, :n_pad] = 0
    # What generate() does for left padding: positions count real tokens from 0; pad slots get 1
    # (their value does not influence any real token since pads are masked out as keys).
    padded_pos = padded_mask.cumsum(-1) - 1
    padded_pos.masked_fill_(padded_mask == 0, 1)
    positions_ids = plain[:1].clone()
    positions_pos = torch.arange(POSITION_OFFSET, POSITION_OFFSET + SEQ, dtype=torch.int64).unsqueeze(0)
    long = ids(1, LONG_SEQ)
    return Inputs(plain, padded_ids, padded_mask, padded_pos, positions_ids, positions_pos, long)


# ---------------------------------------------------------------------------------------------
# Per-model work
# ---------------------------------------------------------------------------------------------
def has_sliding_layers(config: Any) -> bool:
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return "sliding_attention" in layer_types
    return getattr(config, "sliding_window", None) is not None


def compute_reference(run: Runner, inp: Inputs, sliding: bool, checks: dict[str, Any]) -> dict[str, torch.Tensor]:
    """All reference tensors for one (eager) model; also fills `checks` with self-consistency numbers."""
    t: dict[str, torch.Tensor] = {}
    L = run.n_layers

    # a) plain: full prefill of [BATCH, SEQ].
    out_full = run.forward(inp.plain, full_cache=True)
    plain_logits = run.logits(out_full, BATCH, SEQ, "plain")
    check_finite(plain_logits, "plain logits")
    ks, vs = run.kv(out_full.past_key_values, BATCH, SEQ, "plain")
    t["plain/input_ids"] = inp.plain
    t["plain/logits"] = plain_logits
    for i in range(L):
        t[f"plain/k/{i}"], t[f"plain/v/{i}"] = ks[i], vs[i]

    # Same input through the model's own default cache (DynamicCache(config)): logits must match,
    # and each layer's cache must be a suffix of the full K/V (sliding layers keep window-1 slots).
    out_def = run.forward(inp.plain, labels=inp.plain)
    checks["plain_full_vs_default_cache_max_abs_diff"] = d = max_abs_diff(run.logits(out_def, BATCH, SEQ, "plain/default"), plain_logits)
    check(d <= TOL_SAME_PATH, f"plain logits differ between full and default cache: {d}")
    dk, dv = run.kv(out_def.past_key_values, BATCH, SEQ, "plain/default", full=False)
    default_lens = []
    for i in range(L):
        n = dk[i].shape[2]
        default_lens.append(n)
        check(max_abs_diff(dk[i], ks[i][:, :, SEQ - n:]) <= TOL_SAME_PATH, f"default-cache K of layer {i} is not a suffix of the full K")
        check(max_abs_diff(dv[i], vs[i][:, :, SEQ - n:]) <= TOL_SAME_PATH, f"default-cache V of layer {i} is not a suffix of the full V")
    checks["hf_default_cache_len_after_plain"] = default_lens

    # nll per row, and cross-check against HF's own loss (mean over both rows, equal lengths).
    nll = per_row_nll(plain_logits, inp.plain)
    check_finite(nll, "nll")
    t["plain/nll"] = nll.float()
    hf_loss = float(out_def.loss)
    checks["nll_vs_hf_loss_abs_diff"] = d = abs(float(nll.mean()) - hf_loss)
    check(d <= TOL_EQUIVALENT, f"nll mean {float(nll.mean())} != HF loss {hf_loss}")

    # b) continue: prefill PREFILL tokens, then feed the remaining SEQ-PREFILL with the cache.
    cache = run.hf.DynamicCache()
    run.forward(inp.plain[:, :PREFILL], cache=cache)
    out_c = run.forward(inp.plain[:, PREFILL:], cache=cache)
    cont_logits = run.logits(out_c, BATCH, SEQ - PREFILL, "continue")
    check_finite(cont_logits, "continue logits")
    cks, cvs = run.kv(cache, BATCH, SEQ, "continue")
    t["continue/input_ids"] = inp.plain
    t["continue/prefill_len"] = torch.tensor([PREFILL], dtype=torch.int64)
    t["continue/logits"] = cont_logits
    for i in range(L):
        t[f"continue/k/{i}"], t[f"continue/v/{i}"] = cks[i], cvs[i]
    checks["continue_vs_plain_logits_max_abs_diff"] = d = max_abs_diff(cont_logits, plain_logits[:, PREFILL:])
    check(d <= TOL_EQUIVALENT, f"continue logits differ from plain logits: {d}")
    checks["continue_vs_plain_kv_max_abs_diff"] = d = max(
        max(max_abs_diff(cks[i], ks[i]), max_abs_diff(cvs[i], vs[i])) for i in range(L))
    check(d <= TOL_EQUIVALENT, f"continue cache differs from plain cache: {d}")
    # The same two steps with HF's default (possibly sliding) cache.
    out_p = run.forward(inp.plain[:, :PREFILL])
    out_c2 = run.forward(inp.plain[:, PREFILL:], cache=out_p.past_key_values)
    checks["continue_full_vs_default_cache_max_abs_diff"] = d = max_abs_diff(
        run.logits(out_c2, BATCH, SEQ - PREFILL, "continue/default"), cont_logits)
    check(d <= TOL_SAME_PATH, f"continue logits differ between full and default cache: {d}")

    # c) padded: row 1 left-padded, explicit attention_mask and position_ids.
    out_pad = run.forward(inp.padded_ids, attention_mask=inp.padded_mask, position_ids=inp.padded_pos)
    pad_logits = run.logits(out_pad, BATCH, SEQ, "padded")
    real = inp.padded_mask.bool()
    check_finite(pad_logits[real], "padded logits (real tokens)")
    t["padded/input_ids"] = inp.padded_ids
    t["padded/attention_mask"] = inp.padded_mask
    t["padded/position_ids"] = inp.padded_pos
    t["padded/logits"] = pad_logits
    # Each row alone, unpadded, must give the same logits on its real tokens.
    n_pad = SEQ - PADDED_SHORT
    solo0 = run.logits(run.forward(inp.padded_ids[:1]), 1, SEQ, "padded/row0")
    solo1 = run.logits(run.forward(inp.padded_ids[1:, n_pad:]), 1, PADDED_SHORT, "padded/row1")
    checks["padded_vs_unpadded_max_abs_diff"] = d = max(
        max_abs_diff(pad_logits[0], solo0[0]), max_abs_diff(pad_logits[1, n_pad:], solo1[0]))
    check(d <= TOL_EQUIVALENT, f"padded logits differ from unpadded rows: {d}")

    # d) positions: explicit position_ids starting at POSITION_OFFSET (RoPE at arbitrary positions).
    out_pos = run.forward(inp.positions_ids, full_cache=True, position_ids=inp.positions_pos)
    pos_logits = run.logits(out_pos, 1, SEQ, "positions")
    check_finite(pos_logits, "positions logits")
    pks, pvs = run.kv(out_pos.past_key_values, 1, SEQ, "positions")
    t["positions/input_ids"] = inp.positions_ids
    t["positions/position_ids"] = inp.positions_pos
    t["positions/logits"] = pos_logits
    for i in range(L):
        t[f"positions/k/{i}"], t[f"positions/v/{i}"] = pks[i], pvs[i]
    # RoPE is relative: the logits barely move, but the cached keys must (values must not).
    checks["positions_vs_plain_row0_logits_max_abs_diff"] = max_abs_diff(pos_logits[0], plain_logits[0])
    checks["positions_vs_plain_row0_k_max_abs_diff"] = dk0 = max(max_abs_diff(pks[i][0], ks[i][0]) for i in range(L))
    check(dk0 > 1e-3, "keys at shifted positions equal the unshifted ones: RoPE had no effect?")
    checks["positions_vs_plain_row0_v_max_abs_diff"] = dv0 = max(max_abs_diff(pvs[i][0], vs[i][0]) for i in range(L))
    check(dv0 <= TOL_EQUIVALENT, f"values changed with positions: {dv0}")

    # e) long: longer than the sliding window, only where a window exists.
    if sliding:
        out_long = run.forward(inp.long)
        long_logits = run.logits(out_long, 1, LONG_SEQ, "long")
        check_finite(long_logits, "long logits")
        t["long/input_ids"] = inp.long
        t["long/logits"] = long_logits
        out_long_full = run.forward(inp.long, full_cache=True)
        checks["long_full_vs_default_cache_max_abs_diff"] = d = max_abs_diff(
            run.logits(out_long_full, 1, LONG_SEQ, "long/full"), long_logits)
        check(d <= TOL_SAME_PATH, f"long logits differ between full and default cache: {d}")

    # Sanity: logits must be "interesting".
    std = float(plain_logits.std())
    checks["plain_logits_std"] = std
    check(std > 0.1, f"plain logits are nearly constant (std {std}); weights too small?")
    return t


def sdpa_differences(run: Runner, inp: Inputs, ref: dict[str, torch.Tensor], sliding: bool) -> dict[str, Any]:
    """Max |eager - sdpa| on the logits of plain / padded (real tokens only) / long."""
    res: dict[str, Any] = {}
    res["plain"] = max_abs_diff(run.logits(run.forward(inp.plain), BATCH, SEQ, "sdpa plain"), ref["plain/logits"])
    pad = run.logits(run.forward(inp.padded_ids, attention_mask=inp.padded_mask, position_ids=inp.padded_pos),
                     BATCH, SEQ, "sdpa padded")
    real = inp.padded_mask.bool()
    res["padded"] = max_abs_diff(pad[real], ref["padded/logits"][real])
    if sliding:
        res["long"] = max_abs_diff(run.logits(run.forward(inp.long), 1, LONG_SEQ, "sdpa long"), ref["long/logits"])
    return res


def load(hf: Any, spec: ModelSpec, path: Path, attn: str, device: str, config: Any = None) -> Any:
    cls = getattr(hf, spec.model_class)
    kw: dict[str, Any] = dict(dtype=torch.float32, attn_implementation=attn)
    if config is not None:
        kw["config"] = config
    model = cls.from_pretrained(str(path), **kw)
    got = model.config._attn_implementation
    check(got == attn, f"{spec.name}: asked for attn_implementation={attn!r}, model uses {got!r}")
    model.to(device)
    model.eval()
    return model


def process_model(hf: Any, spec: ModelSpec, root: Path, device: str, meta_common: dict[str, str]) -> dict[str, Any]:
    print(f"== {spec.name}: {spec.description}", flush=True)
    out_dir = root / spec.name
    if out_dir.exists():
        shutil.rmtree(out_dir)

    # 1. Build, randomise, save.
    # Deep copy: transformers standardises rope_parameters in place.
    config = getattr(hf, spec.config_class)(**copy.deepcopy(spec.config_kwargs))
    torch.manual_seed(spec.seed)  # HF's own init (overwritten anyway) is then deterministic too
    model = getattr(hf, spec.model_class)(config)
    model.eval()
    check(next(model.parameters()).dtype == torch.float32, f"{spec.name}: model is not float32")
    init_counts = randomize_weights(model, spec)
    tied = bool(config.tie_word_embeddings)
    if tied:
        check(model.lm_head.weight is model.get_input_embeddings().weight, f"{spec.name}: lm_head not tied")
    n_params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    # save_pretrained always writes safetensors in transformers 5 (safe_serialization is gone).
    model.save_pretrained(str(out_dir))
    for required in ("config.json", "model.safetensors"):
        check((out_dir / required).is_file(), f"{spec.name}: save_pretrained did not write {required}")
    check(not list(out_dir.glob("*.bin")), f"{spec.name}: unexpected pickle weights written")
    check(not list(out_dir.glob("model-*.safetensors")), f"{spec.name}: checkpoint was sharded")

    from safetensors import safe_open
    from safetensors.torch import save_file

    saved_shapes: dict[str, list[int]] = {}
    with safe_open(str(out_dir / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            tensor = f.get_tensor(key)
            check(tensor.dtype == torch.float32, f"{spec.name}: saved {key} is {tensor.dtype}")
            saved_shapes[key] = list(tensor.shape)
    check(("lm_head.weight" in saved_shapes) != tied,
          f"{spec.name}: lm_head.weight presence in model.safetensors does not match tie_word_embeddings={tied}")

    # 2. Reload from disk (what the C++ side sees) and make sure nothing was changed on the way.
    eager = load(hf, spec, out_dir, "eager", device)
    reloaded = eager.state_dict()
    for name, tensor in model.state_dict().items():
        check(name in reloaded, f"{spec.name}: {name} missing after reload")
        check(torch.equal(tensor, reloaded[name].cpu()), f"{spec.name}: {name} changed by save/load")
    saved_config = json.loads((out_dir / "config.json").read_text())
    del model

    inp = make_inputs(config.pad_token_id if config.pad_token_id is not None else 0)
    sliding = has_sliding_layers(eager.config)
    checks: dict[str, Any] = {}
    run = Runner(eager, device, hf)
    tensors = compute_reference(run, inp, sliding, checks)

    # 3. transformers-4.x style config (gemma3): must mean the same model.
    if spec.write_v4_config is not None:
        v4 = spec.write_v4_config(saved_config)
        (out_dir / "config_v4.json").write_text(json.dumps(v4, indent=2, sort_keys=True) + "\n")
        cfg_v4 = getattr(hf, spec.config_class).from_dict(v4)
        check(cfg_v4.rope_parameters == eager.config.rope_parameters,
              f"{spec.name}: config_v4 rope_parameters {cfg_v4.rope_parameters} != {eager.config.rope_parameters}")
        check(list(cfg_v4.layer_types) == list(eager.config.layer_types),
              f"{spec.name}: config_v4 layer_types {cfg_v4.layer_types} != {eager.config.layer_types}")
        r4 = Runner(load(hf, spec, out_dir, "eager", device, config=cfg_v4), device, hf)
        d = max_abs_diff(r4.logits(r4.forward(inp.plain), BATCH, SEQ, "v4"), tensors["plain/logits"])
        checks["config_v4_vs_v5_plain_logits_max_abs_diff"] = d
        check(d <= TOL_SAME_PATH, f"{spec.name}: config_v4.json gives different logits ({d})")
        del r4

    # 4. sdpa, reported only.
    try:
        sdpa = load(hf, spec, out_dir, "sdpa", device)
        sdpa_diff: dict[str, Any] = sdpa_differences(Runner(sdpa, device, hf), inp, tensors, sliding)
        del sdpa
    except Exception as exc:  # reported, not fatal: the reference is eager
        sdpa_diff = {"error": f"{type(exc).__name__}: {exc}"}
    del eager, run

    # 5. Write expected.safetensors.
    for name, tensor in tensors.items():
        check(tensor.dtype in (torch.float32, torch.int64), f"{name}: dtype {tensor.dtype}")
    # Private contiguous copies: safetensors refuses tensors that share memory (e.g. the same
    # input_ids stored under two names).
    tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    metadata = dict(meta_common)
    metadata.update({
        "model_name": spec.name,
        "model_class": spec.model_class,
        "attn_implementation": "eager",
        "kv_layout": "[batch, num_key_value_heads, seq, head_dim]; keys after q/k-norm and RoPE",
        "kv_cache": "plain/continue/positions K/V are all positions of every layer (full DynamicCache, "
                    "also for sliding layers); HF's default cache keeps only the last sliding_window-1 "
                    "positions of sliding layers",
        "continue_prefill_len": str(PREFILL),
        "positions_offset": str(POSITION_OFFSET),
        "padded_note": "row 1 left-padded; compare only positions where attention_mask == 1",
        "nll_note": "mean over t of -log softmax(plain/logits[b, t])[ids[b, t+1]], t = 0..seq-2",
    })
    save_file(tensors, str(out_dir / "expected.safetensors"), metadata=metadata)

    plain_logits = tensors["plain/logits"]
    return {
        "model_class": spec.model_class,
        "model_type": saved_config.get("model_type"),
        "description": spec.description,
        "notes": spec.notes,
        "params": n_params,
        "tie_word_embeddings": tied,
        "layer_types": saved_config.get("layer_types"),
        "weight_seed": spec.seed,
        "weight_init_counts": init_counts,
        "weights": saved_shapes,
        "expected_tensors": {k: list(v.shape) for k, v in tensors.items()},
        "stats": {
            "max_abs_logit": float(plain_logits.abs().max()),
            "logit_std": float(plain_logits.std()),
            "nll": [float(x) for x in tensors["plain/nll"]],
        },
        "checks": checks,
        "eager_vs_sdpa_max_abs_logit_diff": sdpa_diff,
    }


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    repo_root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=repo_root / "tests" / "fixtures" / "parity",
                    help="output directory (default: <repo>/tests/fixtures/parity)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--models", default="", help="comma-separated subset of model names (default: all)")
    args = ap.parse_args(argv)

    try:
        import safetensors
        import transformers as hf
    except ImportError as exc:
        fail(f"{exc}; this script needs transformers>=5 and safetensors")
    major = int(hf.__version__.split(".")[0])
    check(major >= 5, f"transformers {hf.__version__} found; the fixtures are defined against transformers 5")

    if args.device == "cuda":
        check(torch.cuda.is_available(), "--device cuda but CUDA is not available")
    torch.set_float32_matmul_precision("highest")  # no TF32 on GPUs: we want float32 references

    specs = model_specs()
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = set(wanted) - {s.name for s in specs}
        check(not unknown, f"unknown model(s) {sorted(unknown)}; known: {[s.name for s in specs]}")
        specs = [s for s in specs if s.name in wanted]

    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    meta_common = {
        "fixture_version": FIXTURE_VERSION,
        "transformers_version": hf.__version__,
        "torch_version": torch.__version__,
        "safetensors_version": getattr(safetensors, "__version__", "unknown"),
        "python_version": platform.python_version(),
        "device": args.device,
        "date": now,
        "script": "tools/make_parity_fixtures.py",
    }

    models: dict[str, Any] = {}
    for spec in specs:
        models[spec.name] = process_model(hf, spec, root, args.device, meta_common)

    # File inventory (sizes + sha256) after everything is written.
    total = 0
    for name, entry in models.items():
        files = {}
        for path in sorted((root / name).iterdir()):
            check(path.is_file(), f"unexpected non-file {path}")
            size = path.stat().st_size
            total += size
            files[path.name] = {"bytes": size, "sha256": sha256_file(path)}
        entry["files"] = files

    manifest = {
        **meta_common,
        "attn_implementation": "eager",
        "note": "expected.safetensors holds the eager reference; eager_vs_sdpa_* is informational only",
        "inputs": {
            "seed": INPUT_SEED, "batch": BATCH, "seq": SEQ, "prefill": PREFILL, "padded_short": PADDED_SHORT,
            "position_offset": POSITION_OFFSET, "long_seq": LONG_SEQ, "token_range": [FIRST_TOKEN_ID, VOCAB],
        },
        "total_bytes": total,
        "models": models,
    }
    (root / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    # Summary table.
    print()
    print(f"{'model':<12} {'params':>8} {'max|logit|':>10} {'nll row0':>9} {'nll row1':>9} {'sdpa diff':>10}")
    for name, e in models.items():
        s = e["stats"]
        sd = e["eager_vs_sdpa_max_abs_logit_diff"]
        sd_txt = "error" if "error" in sd else f"{max(sd.values()):.2e}"
        print(f"{name:<12} {e['params']:>8} {s['max_abs_logit']:>10.3f} {s['nll'][0]:>9.4f} {s['nll'][1]:>9.4f} {sd_txt:>10}")
    print(f"\nwrote {len(models)} model(s), {total / 1e6:.2f} MB, to {root}")
    if total > MAX_TOTAL_BYTES:
        fail(f"fixtures total {total} bytes > {MAX_TOTAL_BYTES}: shrink the models or inputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
