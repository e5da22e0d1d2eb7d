#!/usr/bin/env python3
"""Golden numbers of the seed's Python module, recomputed on Hugging Face transformers.

The seed (shared/seed/000_5421c10914bb9ccd.txt) is the test suite of a Python module,
lib/kv_cache.py, that builds, truncates, re-positions and scores document KV caches on HF
transformers.  This script re-implements the functions that suite imports (build_kv_cache,
build_truncated_kv_cache(_corrected), build_truncated_cache_variable_prefix, build_suffix_kv_cache,
extract_and_truncate_cache_with_bos, correct_rope_positions(_with_bos), apply_rope_roundtrip_noise,
score_answer_with_cache, build_hybrid_cache, replace_values_at_layers, _build_rope_correction,
_get_rope_theta) with the seed's semantics, runs them on the seed's PASSAGE / QUERY / ANSWER and
prefixes with kvprime's demo model (models/demo), and dumps token ids, NLLs (mean and per token)
and K/V of the first and last layer into one safetensors file.  tests/seed/test_seed_golden.cpp
runs the same inputs through kvprime's C++ API and compares.

Where the seed's behaviour is a trap that kvprime fixes on purpose, both are dumped, named
`seed/...` (what the Python module computes) and `kvprime/...` (what kvprime defines):
  * prefix/document boundary: the seed counts the tokens of the prefix tokenized ALONE (with BOS)
    and cuts that many slots; kvprime finds the boundary in the JOINT tokenization by character
    (= byte, all texts here are ASCII) offsets: the document starts at the first non-special token
    that ends after the prefix.  On the demo tokenizer (byte-level BPE) a prefix ending in a space
    differs: alone it ends in a lone "Ġ", jointly the space is merged into the document's first word.
  * RoPE correction: the seed rotates with cos/sin built from one rope_theta and
    head_dim = hidden_size / num_attention_heads (float32 inv_freq, float64 angles); kvprime rotates
    with the model's own inv_freq (HF's rotary buffer; float64 angles, float32 product).  For the demo
    model (plain default RoPE, head_dim 64 = 384 / 6) both are the same rotation up to float32
    rounding; the script checks that.
  * build_suffix_kv_cache: the seed tokenizes passage + "\\n\\nRelated question: " + suffix as one
    string; kvprime tokenizes the passage (with BOS) exactly like the bare cache and appends the
    separately tokenized suffix_template ("\\n\\n{suffix}" by default).

Reference settings: CPU, float32 (the demo's float16 weights upcast exactly), eager attention,
batch 1, the seed's calls (one forward per cache; scoring = a query forward that extends the cache
and an answer forward, NLL = mean cross-entropy of the answer tokens after the first).

Written against transformers 5.x (checked against the 5.17 API: DynamicCache().layers[i].keys /
.values, from_pretrained(dtype=...), config.rope_parameters); 4.x caches (key_cache / value_cache)
are tolerated.

Usage (from the repository root, on a machine with torch + transformers + tokenizers + safetensors):

    python3 tools/make_seed_golden.py --out tests/fixtures/seed_golden

See tools/README.md for the produced files.
"""

from __future__ import annotations

import argparse
import codecs
import datetime as _dt
import hashlib
import json
import platform
import re
import struct
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

# Bump whenever names, shapes, dtypes or the meaning of the produced tensors change; the C++ test
# (tests/seed/test_seed_golden.cpp, kFixtureVersion) checks it.
FIXTURE_VERSION = "1"

MAX_TOTAL_BYTES = 5 * 1024 * 1024

# ---------------------------------------------------------------------------------------------
# The seed's inputs (shared/seed/000_5421c10914bb9ccd.txt), verbatim.
# ---------------------------------------------------------------------------------------------
PASSAGE = (
    "The Amazon rainforest produces approximately 20 percent of the world's oxygen. "
    "It covers over 5.5 million square kilometers and is home to roughly 10 percent "
    "of all species on Earth."
)
QUERY = "how much oxygen does the amazon produce"
ANSWER = "approximately 20 percent"
WRONG_ANSWER = "purple elephants flying sideways"                # test 5
SURROGATE = "how much oxygen"                                    # test 8
VARIABLE_PREFIXES = [                                            # test 9
    "Random prefix text here",
    "Hello world",
    "Completely different text about quantum physics and black holes",
]
MATCHED_PREFIX = "Some irrelevant prefix text here. "            # test 6 (the seed adds " ")
SUFFIX = "What is the oxygen percentage?"                        # test 11
SEED_SUFFIX_SEPARATOR = "\n\nRelated question: "                 # lib/kv_cache.py's default
BPE_CASES = [                                                    # test 10: (prefix, document)
    ("Some prefix text ", "Document:\nThe quick brown fox"),
    ("an ", "Document:\nelectric"),
    ("Some prefix text ", "the quick brown fox"),                # not the seed's: the trap bites
]
# The boundary trap on the demo tokenizer. With the default templates it never bites there (the
# demo BPE has no "ĠDocument": " Document" is "Ġ" + "Document" whether the prefix is alone or not).
# The seed's build_truncated_kv_cache_corrected takes custom templates; with these the prefix alone
# ends in a lone "Ġ" that the joint tokenization merges into "ĠThe", so the seed cuts one slot more.
TRAP_SURROGATE_TEMPLATE = "{surrogate} "
TRAP_DOCUMENT_TEMPLATE = "{document}"
ROPE_OFFSETS = [1, 5, 10, 15, 20, 50, 200, -15]                  # tests 1 and 2
ROPE_POSITIONS = [1, 3, 4, 6, 8, 21, 53, 203]                    # test 1: HF rotary_emb cos/sin
ROUNDTRIP_OFFSET = 10                                            # test 3

# kvprime's ExperimentConfig defaults (include/kvprime/prime/experiment_config.h); main() checks
# them against the header so that the two cannot drift apart.
TEMPLATES = {
    "document_template": "Document:\n{document}",
    "query_template": "\n\nQuery: {query}\nAnswer:",
    "surrogate_template": "This document may be relevant to queries like: {surrogate}\n\n",
    "prefix_separator": " ",
    "suffix_template": "\n\n{suffix}",
    "answer_template": "{answer}",
}

# Self-consistency checks that stop the script (float32 on CPU).  Loose on purpose: they guard
# against a broken re-implementation; the real comparison (C++ against these numbers, 1e-5) is in
# tests/seed/test_seed_golden.cpp, and the measured values are recorded in MANIFEST.json "checks".
TOL_REL = 1e-4        # max |a - b| / max |b|: equivalent computations (op order, matmul shapes)
TOL_ROPE_HF = 1e-4    # the seed's correction against HF's rotary_emb (the seed itself used 1e-3)


# ---------------------------------------------------------------------------------------------
# Small helpers (same style as make_parity_fixtures.py)
# ---------------------------------------------------------------------------------------------
def fail(msg: str) -> None:
    raise SystemExit(f"make_seed_golden: ERROR: {msg}")


def check(cond: bool, msg: str) -> None:
    """Assert that survives `python -O`."""
    if not cond:
        fail(msg)


def check_finite(t: torch.Tensor, what: str) -> None:
    check(bool(torch.isfinite(t).all()), f"{what}: contains NaN/Inf")


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    check(tuple(a.shape) == tuple(b.shape), f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.double() - b.double()).abs().max())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1


def fnv1a64(data: bytes, h: int = FNV_OFFSET) -> int:
    """kvprime::fnv1a64 (src/core/hash.cpp)."""
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def safetensors_header(path: Path) -> bytes:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return f.read(n)


def kvprime_model_fingerprint(model_dir: Path) -> tuple[str, str]:
    """(Checkpoint::fingerprint, Model identity fingerprint) as kvprime computes them.

    Checkpoint: FNV-1a 64 over the sorted header JSON texts of the shards, each preceded by its
    length as a little-endian uint64.  Model: fnv1a64(checkpoint_hex, seed = fnv1a64(config.json)).
    Both cover names, dtypes, shapes and offsets of the weights, not their values; the script also
    records the sum of |w| (below) so that retrained weights are noticed.
    """
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted({v for v in json.loads(index.read_text())["weight_map"].values()})
        files = [model_dir / s for s in shards]
    else:
        files = [model_dir / "model.safetensors"]
    headers = sorted(safetensors_header(p) for p in files)
    h = fnv1a64(b"")
    for text in headers:
        h = fnv1a64(struct.pack("<Q", len(text)), h)
        h = fnv1a64(text, h)
    ckpt = f"{h:016x}"
    ident = fnv1a64(ckpt.encode(), fnv1a64((model_dir / "config.json").read_bytes()))
    return ckpt, f"{ident:016x}"


def weights_abs_sum(model_dir: Path) -> float:
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    files = ([model_dir / s for s in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
             if index.is_file() else [model_dir / "model.safetensors"])
    total = 0.0
    for p in files:
        with safe_open(str(p), framework="pt") as f:
            for key in sorted(f.keys()):
                total += float(f.get_tensor(key).double().abs().sum())
    return total


def cpp_string_defaults(header: Path) -> dict[str, str]:
    """`std::string name = "literal";` members of a C++ header, literals unescaped."""
    out: dict[str, str] = {}
    for m in re.finditer(r'std::string\s+(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*;', header.read_text()):
        out[m.group(1)] = codecs.decode(m.group(2), "unicode_escape")
    return out


def i64(values: list[int]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.int64)


def f64(value: float) -> torch.Tensor:
    return torch.tensor([float(value)], dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Tokenizer: transformers' tokenizer (what the seed called), cross-checked against `tokenizers`
# ---------------------------------------------------------------------------------------------
class Tok:
    def __init__(self, hf: Any, model_dir: Path):
        from tokenizers import Tokenizer

        self.raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        try:
            self.hf = hf.AutoTokenizer.from_pretrained(str(model_dir))
            self.loaded_with = "AutoTokenizer.from_pretrained"
        except Exception as exc:  # e.g. an older transformers that cannot read the config
            print(f"AutoTokenizer failed ({type(exc).__name__}: {exc}); using PreTrainedTokenizerFast", flush=True)
            self.hf = hf.PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"),
                                                 bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                                 pad_token="<pad>")
            self.loaded_with = "PreTrainedTokenizerFast(tokenizer_file=...)"
        self.bos_id = self.hf.bos_token_id
        check(self.bos_id is not None, "the tokenizer has no BOS token")

    def encode(self, text: str, special: bool) -> list[int]:
        """tokenizer(text, add_special_tokens=special)['input_ids'], as the seed calls it."""
        check(text.isascii(), f"non-ASCII text {text!r}: offsets would be characters, not bytes")
        ids = list(self.hf(text, add_special_tokens=special, padding=False, truncation=False)["input_ids"])
        raw = list(self.raw.encode(text, add_special_tokens=special).ids)
        check(ids == raw, f"transformers and tokenizers disagree on {text!r}: {ids} vs {raw}")
        if special:
            check(len(ids) >= 1 and ids[0] == self.bos_id, f"no BOS at the start of {text!r}: {ids}")
        return ids

    def joint(self, prefix: str, document: str) -> tuple[list[int], int, list[tuple[int, int]]]:
        """kvprime's tokenize_joint: ids of prefix + document (with BOS) and the boundary index.

        The document starts at the first token after BOS that is not special and whose end offset
        lies beyond the prefix (a token straddling the boundary belongs to the document).
        """
        text = prefix + document
        check(text.isascii(), f"non-ASCII text {text!r}")
        enc = self.raw.encode(text, add_special_tokens=True)
        ids = list(enc.ids)
        check(ids == self.encode(text, True), "joint ids differ from the plain encoding")
        offsets = [tuple(o) for o in enc.offsets]
        special = list(enc.special_tokens_mask)
        b = 1
        while b < len(ids) and (special[b] or offsets[b][1] <= len(prefix)):
            b += 1
        check(b < len(ids), f"the document {document[:40]!r} produced no tokens after the prefix")
        return ids, b, offsets

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.raw.id_to_token(int(i)) for i in ids]


# ---------------------------------------------------------------------------------------------
# Cache access, both transformers APIs
# ---------------------------------------------------------------------------------------------
class Caches:
    def __init__(self, hf: Any):
        self.DynamicCache = hf.DynamicCache

    @staticmethod
    def kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        layers = getattr(cache, "layers", None)
        if layers is not None:  # transformers >= 4.56 / 5.x
            return [(layer.keys, layer.values) for layer in layers]
        if hasattr(cache, "key_cache"):  # transformers 4.x DynamicCache
            return list(zip(cache.key_cache, cache.value_cache))
        return [(kv[0], kv[1]) for kv in cache]  # legacy tuples

    @staticmethod
    def set_keys(cache: Any, il: int, keys: torch.Tensor) -> None:
        if getattr(cache, "layers", None) is not None:
            cache.layers[il].keys = keys
        else:
            cache.key_cache[il] = keys

    def make(self, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
        c = self.DynamicCache()
        for il, (k, v) in enumerate(kv):
            c.update(k, v, il)
        return c

    def clone(self, cache: Any) -> Any:
        """The seed's deepcopy_cache."""
        return self.make([(k.clone(), v.clone()) for k, v in self.kv(cache)])

    def length(self, cache: Any) -> int:
        return int(self.kv(cache)[0][0].shape[2])


# ---------------------------------------------------------------------------------------------
# The seed's lib/kv_cache.py, re-implemented on HF (semantics as the seed's tests use them)
# ---------------------------------------------------------------------------------------------
def seed_rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def seed_build_rope_correction(offset: int, head_dim: int, rope_theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [head_dim] float32 rotating by -offset: inv_freq in float32 as HF computes it,
    the product -offset * inv_freq in float32, then cos/sin in float64, returned as float32."""
    inv_freq = 1.0 / (rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    angles = (-offset * inv_freq).double()
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().float(), emb.sin().float()


def seed_get_rope_theta(config: Any) -> float:
    rp = getattr(config, "rope_parameters", None)
    if isinstance(rp, dict) and "rope_theta" in rp:
        return float(rp["rope_theta"])
    return float(getattr(config, "rope_theta", 10000.0))


class Seed:
    """lib/kv_cache.py on HF: every builder returns fresh caches; correction edits in place."""

    def __init__(self, model: Any, tok: Tok, caches: Caches):
        self.model = model
        self.tok = tok
        self.c = caches
        cfg = model.config
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads  # the seed's head_dim
        self.theta = seed_get_rope_theta(cfg)

    def forward_cache(self, ids: list[int]) -> Any:
        t = torch.tensor([ids], dtype=torch.int64)
        with torch.no_grad():
            out = self.model(input_ids=t, attention_mask=torch.ones_like(t), use_cache=True, return_dict=True)
        check(out.past_key_values is not None, "no cache returned")
        return out.past_key_values

    def build_kv_cache(self, context: str) -> tuple[int, Any, list[int]]:
        ids = self.tok.encode(context, True)
        return len(ids), self.forward_cache(ids), ids

    def extract_and_truncate_cache_with_bos(self, cache: Any, doc_len: int) -> Any:
        out = []
        for k, v in self.c.kv(cache):
            out.append((torch.cat([k[:, :, :1, :], k[:, :, k.shape[2] - doc_len:, :]], dim=2).contiguous(),
                        torch.cat([v[:, :, :1, :], v[:, :, v.shape[2] - doc_len:, :]], dim=2).contiguous()))
        return self.c.make(out)

    def correct_rope_positions_with_bos(self, cache: Any, offset: int) -> Any:
        if offset == 0:
            return cache
        cos_a, sin_a = seed_build_rope_correction(offset, self.head_dim, self.theta)
        for il, (k, _) in enumerate(self.c.kv(cache)):
            c, s = cos_a.to(k.dtype), sin_a.to(k.dtype)
            doc = k[:, :, 1:, :]
            corrected = doc * c + seed_rotate_half(doc) * s
            self.c.set_keys(cache, il, torch.cat([k[:, :, :1, :], corrected], dim=2))
        return cache

    def apply_rope_roundtrip_noise(self, cache: Any, offset: int) -> Any:
        if offset == 0:
            return cache
        cf, sf = seed_build_rope_correction(-offset, self.head_dim, self.theta)  # forward +offset
        ci, si = seed_build_rope_correction(offset, self.head_dim, self.theta)   # back -offset
        for il, (k, _) in enumerate(self.c.kv(cache)):
            doc = k[:, :, 1:, :]
            rotated = doc * cf.to(k.dtype) + seed_rotate_half(doc) * sf.to(k.dtype)
            back = rotated * ci.to(k.dtype) + seed_rotate_half(rotated) * si.to(k.dtype)
            self.c.set_keys(cache, il, torch.cat([k[:, :, :1, :], back], dim=2))
        return cache

    def truncated(self, prefix: str, document: str, correct: bool) -> dict[str, Any]:
        """The common body of build_truncated_kv_cache(_corrected) and _variable_prefix."""
        prefix_len = len(self.tok.encode(prefix, True))  # the prefix tokenized ALONE, with BOS
        full_ids = self.tok.encode(prefix + document, True)
        doc_len = len(full_ids) - prefix_len
        check(doc_len > 0, f"no document tokens after {prefix!r}")
        cache = self.extract_and_truncate_cache_with_bos(self.forward_cache(full_ids), doc_len)
        if correct:
            self.correct_rope_positions_with_bos(cache, prefix_len - 1)
        kept = [full_ids[0]] + full_ids[len(full_ids) - doc_len:]
        first = len(full_ids) - doc_len
        positions = [0] + (list(range(1, doc_len + 1)) if correct else list(range(first, len(full_ids))))
        return dict(cache=cache, keep_len=1 + doc_len, prefix_len=prefix_len, full_ids=full_ids,
                    ids=kept, positions=positions)

    def build_truncated_kv_cache(self, surrogate: str, passage: str, correct: bool) -> dict[str, Any]:
        return self.truncated(TEMPLATES["surrogate_template"].format(surrogate=surrogate),
                              TEMPLATES["document_template"].format(document=passage), correct)

    def build_truncated_cache_variable_prefix(self, prefix: str, passage: str) -> dict[str, Any]:
        # The seed: prefix_text + " " (a literal space), then "Document:\n{document}".
        return self.truncated(prefix + " ", TEMPLATES["document_template"].format(document=passage), True)

    def matched(self, prefix: str, passage: str) -> dict[str, Any]:
        """The seed's test 6: bare cache from the document ids cut out of the joint tokenization
        at the prefix-alone count, primed = truncated + corrected from the same forward ids."""
        prefix_with_sep = prefix + " "
        prefix_len = len(self.tok.encode(prefix_with_sep, True))
        full_ids = self.tok.encode(prefix_with_sep + TEMPLATES["document_template"].format(document=passage), True)
        doc_ids = full_ids[prefix_len:]
        bare_ids = [full_ids[0]] + doc_ids
        bare = self.forward_cache(bare_ids)
        primed = self.extract_and_truncate_cache_with_bos(self.forward_cache(full_ids), len(doc_ids))
        self.correct_rope_positions_with_bos(primed, prefix_len - 1)
        return dict(bare=bare, primed=primed, ids=bare_ids, prefix_len=prefix_len, full_ids=full_ids,
                    positions=list(range(len(bare_ids))))

    def build_suffix_kv_cache(self, passage: str, suffix: str, separator: str) -> tuple[int, Any, list[int]]:
        return self.build_kv_cache(passage + separator + suffix)

    def score_answer_with_cache(self, cache: Any, ctx_len: int, query_prompt: str, answer: str) -> dict[str, Any]:
        """Query forward extending `cache` (the seed mutates it), then the answer forward; mean
        cross-entropy of answer tokens 1.. (the first answer token is not scored)."""
        q = torch.tensor([self.tok.encode(query_prompt, False)], dtype=torch.int64)
        a = torch.tensor([self.tok.encode(answer, False)], dtype=torch.int64)
        check(a.shape[1] >= 2, f"answer {answer!r} has < 2 tokens")
        with torch.no_grad():
            qo = self.model(input_ids=q, attention_mask=torch.ones((1, ctx_len + q.shape[1]), dtype=torch.int64),
                            past_key_values=cache, use_cache=True, return_dict=True)
            ao = self.model(input_ids=a, attention_mask=torch.ones((1, ctx_len + q.shape[1] + a.shape[1]), dtype=torch.int64),
                            past_key_values=qo.past_key_values, use_cache=False, return_dict=True)
        logits = ao.logits[0, :-1, :].float()
        labels = a[0, 1:]
        nll_sum = torch.nn.CrossEntropyLoss(reduction="sum")(logits, labels).item()
        per_token = F.cross_entropy(logits, labels, reduction="none")
        check_finite(per_token, "per-token nll")
        return dict(nll=nll_sum / (a.shape[1] - 1), token_nll=per_token.float(),
                    len_after=self.c.length(cache))

    def build_hybrid_cache(self, keys_from: Any, values_from: Any) -> Any:
        return self.c.make([(k.clone(), v.clone()) for (k, _), (_, v) in zip(self.c.kv(keys_from), self.c.kv(values_from))])

    def replace_values_at_layers(self, target: Any, source: Any, layers: list[int]) -> Any:
        out = []
        for il, ((tk, tv), (_, sv)) in enumerate(zip(self.c.kv(target), self.c.kv(source))):
            out.append((tk.clone(), (sv if il in layers else tv).clone()))
        return self.c.make(out)


# ---------------------------------------------------------------------------------------------
# kvprime's definitions, on the same HF model
# ---------------------------------------------------------------------------------------------
class Kvprime:
    """Boundary by offsets in the joint tokenization; re-positioning with the model's inv_freq."""

    def __init__(self, seed: Seed):
        self.s = seed
        self.tok = seed.tok
        self.c = seed.c
        rot = seed.model.model.rotary_emb
        self.inv_freq = rot.inv_freq.detach().float().cpu().clone()
        self.attention_scaling = float(getattr(rot, "attention_scaling", 1.0))

    def shift_keys(self, k: torch.Tensor, delta: int) -> torch.Tensor:
        """Rotary::shift (src/model/rope.cpp) for a full-width rotary: angle delta * inv_freq in
        float64, cos/sin and the rotation in float32."""
        angles = float(delta) * self.inv_freq.double()
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos().float(), emb.sin().float()
        kf = k.float()
        return (kf * cos + seed_rotate_half(kf) * sin).to(k.dtype)

    def reposition_with_bos(self, cache: Any, offset: int) -> Any:
        out = []
        for k, v in self.c.kv(cache):
            out.append((torch.cat([k[:, :, :1, :], self.shift_keys(k[:, :, 1:, :], -offset)], dim=2), v))
        return self.c.make(out)

    def roundtrip(self, cache: Any, offset: int) -> Any:
        out = []
        for k, v in self.c.kv(cache):
            doc = self.shift_keys(self.shift_keys(k[:, :, 1:, :], offset), -offset)
            out.append((torch.cat([k[:, :, :1, :], doc], dim=2), v))
        return self.c.make(out)

    def truncated(self, prefix: str, document: str, correct: bool) -> dict[str, Any]:
        ids, b, offsets = self.tok.joint(prefix, document)
        doc_len = len(ids) - b
        cache = self.s.extract_and_truncate_cache_with_bos(self.s.forward_cache(ids), doc_len)
        if correct:
            cache = self.reposition_with_bos(cache, b - 1)
        positions = [0] + (list(range(1, doc_len + 1)) if correct else list(range(b, len(ids))))
        return dict(cache=cache, keep_len=1 + doc_len, boundary=b, full_ids=ids, offsets=offsets,
                    ids=[ids[0]] + ids[b:], positions=positions,
                    independent_prefix_len=len(self.tok.encode(prefix, True)))

    def matched(self, prefix: str, passage: str) -> dict[str, Any]:
        ids, b, _ = self.tok.joint(prefix + TEMPLATES["prefix_separator"],
                                   TEMPLATES["document_template"].format(document=passage))
        bare_ids = [ids[0]] + ids[b:]
        bare = self.s.forward_cache(bare_ids)
        primed = self.reposition_with_bos(
            self.s.extract_and_truncate_cache_with_bos(self.s.forward_cache(ids), len(ids) - b), b - 1)
        return dict(bare=bare, primed=primed, ids=bare_ids, boundary=b, full_ids=ids,
                    positions=list(range(len(bare_ids))))

    def suffix_ids(self, passage: str, suffix: str, template: str) -> list[int]:
        return self.tok.encode(passage, True) + self.tok.encode(template.format(suffix=suffix), False)


# ---------------------------------------------------------------------------------------------
# Dumping
# ---------------------------------------------------------------------------------------------
class Dump:
    def __init__(self, seed: Seed, layers: list[int], query_prompt: str):
        self.s = seed
        self.layers = layers
        self.query_prompt = query_prompt
        self.t: dict[str, torch.Tensor] = {}
        self.meaning: dict[str, str] = {}
        cfg = seed.model.config
        self.n_layers = cfg.num_hidden_layers
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    def put(self, name: str, tensor: torch.Tensor, meaning: str) -> None:
        check(name not in self.t, f"duplicate tensor {name}")
        check(tensor.dtype in (torch.float32, torch.float64, torch.int64), f"{name}: dtype {tensor.dtype}")
        if tensor.is_floating_point():
            check_finite(tensor, name)
        self.t[name] = tensor.detach().cpu().clone().contiguous()
        self.meaning[name] = meaning

    def cache(self, name: str, cache: Any, ids: list[int], positions: list[int], what: str,
              score: bool = True) -> dict[str, Any]:
        """ids / positions / k,v of the dumped layers / the seed's score of ANSWER after QUERY."""
        kv = self.s.c.kv(cache)
        S = len(ids)
        check(len(kv) == self.n_layers, f"{name}: {len(kv)} layers, model {self.n_layers}")
        check(len(positions) == S, f"{name}: {len(positions)} positions for {S} ids")
        for il, (k, v) in enumerate(kv):
            check(tuple(k.shape) == (1, self.n_kv, S, self.head_dim), f"{name}: K layer {il} {tuple(k.shape)}")
            check(tuple(v.shape) == (1, self.n_kv, S, self.head_dim), f"{name}: V layer {il} {tuple(v.shape)}")
            check(k.dtype == torch.float32 and v.dtype == torch.float32, f"{name}: cache is not float32")
        self.put(f"{name}/ids", i64(ids), f"{what}: token id of every cache slot (slot 0 = BOS)")
        self.put(f"{name}/positions", i64(positions),
                 f"{what}: the RoPE position each slot's key encodes")
        for il in self.layers:
            self.put(f"{name}/k/{il}", kv[il][0].float(), f"{what}: keys of layer {il} [1, n_kv, S, head_dim]")
            self.put(f"{name}/v/{il}", kv[il][1].float(), f"{what}: values of layer {il} [1, n_kv, S, head_dim]")
        res: dict[str, Any] = {}
        if score:
            res = self.s.score_answer_with_cache(self.s.c.clone(cache), S, self.query_prompt, ANSWER)
            self.put(f"{name}/nll", f64(res["nll"]),
                     f"{what}: score_answer_with_cache(cache, {S}, query_prompt, ANSWER), the seed's mean NLL")
            self.put(f"{name}/token_nll", res["token_nll"], f"{what}: per-token NLL of answer tokens 1..")
        return res


def layer_max_abs(caches: Caches, a: Any, b: Any, which: int, slots: slice) -> list[float]:
    """Per layer max |a - b| of the keys (which = 0) or values (1) in the given slots."""
    out = []
    for (ka, va), (kb, vb) in zip(caches.kv(a), caches.kv(b)):
        x, y = (ka, kb) if which == 0 else (va, vb)
        out.append(max_abs_diff(x[:, :, slots, :], y[:, :, slots, :]))
    return out


def layer_max_rel(caches: Caches, a: Any, b: Any, which: int, slots: slice) -> list[float]:
    """Per layer max |a - b| / max |b| (the C++ tests' max_rel_diff)."""
    out = []
    for (ka, va), (kb, vb) in zip(caches.kv(a), caches.kv(b)):
        x, y = (ka, kb) if which == 0 else (va, vb)
        scale = max(float(y[:, :, slots, :].abs().max()), 1e-30)
        out.append(max_abs_diff(x[:, :, slots, :], y[:, :, slots, :]) / scale)
    return out


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=repo / "tests" / "fixtures" / "seed_golden",
                    help="output directory (default: <repo>/tests/fixtures/seed_golden)")
    ap.add_argument("--model", type=Path, default=repo / "models" / "demo",
                    help="HF checkpoint directory with tokenizer.json (default: <repo>/models/demo)")
    args = ap.parse_args(argv)

    try:
        import safetensors
        import tokenizers
        import transformers as hf
        from safetensors.torch import save_file
    except ImportError as exc:
        fail(f"{exc}; this script needs torch, transformers (5.x), tokenizers and safetensors")
    major = int(hf.__version__.split(".")[0])
    if major < 5:
        print(f"WARNING: transformers {hf.__version__}; the fixture is defined against transformers 5", flush=True)

    # Templates must be kvprime's ExperimentConfig defaults.
    header = repo / "include" / "kvprime" / "prime" / "experiment_config.h"
    cpp = cpp_string_defaults(header)
    for key, value in TEMPLATES.items():
        check(cpp.get(key) == value, f"{header}: {key} = {cpp.get(key)!r}, this script uses {value!r}")

    torch.manual_seed(0)  # nothing here is random; fixed anyway
    torch.set_float32_matmul_precision("highest")
    model_dir = args.model.resolve()
    for f in ("config.json", "tokenizer.json"):
        check((model_dir / f).is_file(), f"{model_dir / f} is missing")

    load_kw: dict[str, Any] = dict(attn_implementation="eager")
    load_kw["dtype" if major >= 5 else "torch_dtype"] = torch.float32
    model = hf.AutoModelForCausalLM.from_pretrained(str(model_dir), **load_kw)
    model.eval()
    check(next(model.parameters()).dtype == torch.float32, "model is not float32")
    check(model.config._attn_implementation == "eager", f"attention is {model.config._attn_implementation}")
    cfg = model.config
    n_layers = cfg.num_hidden_layers
    layers = sorted({0, n_layers - 1})

    tok = Tok(hf, model_dir)
    caches = Caches(hf)
    seed = Seed(model, tok, caches)
    kvp = Kvprime(seed)

    # This script compares the seed's single-theta correction with the model's own rotation; it
    # assumes what the demo model has: one plain (default) RoPE for all layers, full rotary width.
    rp = getattr(cfg, "rope_parameters", None) or {}
    rope_type = rp.get("rope_type", "default") if isinstance(rp, dict) else "default"
    check(rope_type == "default", f"rope_type {rope_type!r}: the script is written for plain RoPE")
    check(getattr(cfg, "layer_types", None) is None or len(set(cfg.layer_types)) == 1, "per-layer attention types")
    check(kvp.inv_freq.numel() * 2 == seed.head_dim, f"rotary width {kvp.inv_freq.numel() * 2} != head_dim {seed.head_dim}")
    check(kvp.attention_scaling == 1.0, f"attention_scaling {kvp.attention_scaling}")

    query_prompt = TEMPLATES["query_template"].format(query=QUERY)
    document = TEMPLATES["document_template"].format(document=PASSAGE)
    d = Dump(seed, layers, query_prompt)
    checks: dict[str, Any] = {}
    tokens: dict[str, Any] = {}

    d.put("model/layers_dumped", i64(layers), "layers whose K/V are dumped (first and last)")
    d.put("model/inv_freq", kvp.inv_freq, "HF's rotary inv_freq buffer (model.model.rotary_emb.inv_freq)")
    wsum = weights_abs_sum(model_dir)
    d.put("model/weights_abs_sum", f64(wsum), "sum of |w| over every tensor of model.safetensors, float64")

    q_ids = tok.encode(query_prompt, False)
    a_ids = tok.encode(ANSWER, False)
    w_ids = tok.encode(WRONG_ANSWER, False)
    d.put("score/query_ids", i64(q_ids), "query_template(QUERY) tokenized without special tokens")
    d.put("score/answer_ids", i64(a_ids), "ANSWER tokenized without special tokens")
    d.put("score/wrong_answer_ids", i64(w_ids), "WRONG_ANSWER tokenized without special tokens")
    tokens["query_prompt"] = tok.tokens(q_ids)
    tokens["answer"] = tok.tokens(a_ids)

    # ---- RoPE (seed tests 1, 2) ----------------------------------------------------------------
    d.put("rope/theta", f64(seed.theta), "_get_rope_theta(model.config)")
    d.put("rope/seed_head_dim", i64([seed.head_dim]), "the seed's head_dim = hidden_size // num_attention_heads")
    d.put("rope/offsets", i64(ROPE_OFFSETS), "offsets of rope/correction/<offset>/{cos,sin}")
    for off in ROPE_OFFSETS:
        cos, sin = seed_build_rope_correction(off, seed.head_dim, seed.theta)
        d.put(f"rope/correction/{off}/cos", cos, f"_build_rope_correction({off}, head_dim, theta)[0]")
        d.put(f"rope/correction/{off}/sin", sin, f"_build_rope_correction({off}, head_dim, theta)[1]")
    pos = torch.tensor([ROPE_POSITIONS], dtype=torch.int64)
    with torch.no_grad():
        hf_cos, hf_sin = model.model.rotary_emb(torch.zeros(1, 1, 1, seed.head_dim, dtype=torch.float32), pos)
    hf_cos, hf_sin = hf_cos.reshape(len(ROPE_POSITIONS), -1).float(), hf_sin.reshape(len(ROPE_POSITIONS), -1).float()
    d.put("rope/hf_positions", i64(ROPE_POSITIONS), "positions of rope/hf_cos, rope/hf_sin")
    d.put("rope/hf_cos", hf_cos, "model.model.rotary_emb(x, positions) cos, [P, head_dim]")
    d.put("rope/hf_sin", hf_sin, "model.model.rotary_emb(x, positions) sin, [P, head_dim]")
    # Test 1: the correction by -S takes a key rotated at p + S to the key at p.
    g = torch.Generator().manual_seed(1)
    key_pre = torch.randn(1, 1, 1, seed.head_dim, generator=g)
    idx = {p: i for i, p in enumerate(ROPE_POSITIONS)}
    t1 = {}
    for p, shift in [(1, 20), (3, 1), (3, 5), (3, 50), (3, 200)]:
        at_p = key_pre * hf_cos[idx[p]] + seed_rotate_half(key_pre) * hf_sin[idx[p]]
        at_ps = key_pre * hf_cos[idx[p + shift]] + seed_rotate_half(key_pre) * hf_sin[idx[p + shift]]
        cc, sc = seed_build_rope_correction(shift, seed.head_dim, seed.theta)
        t1[f"p{p}_S{shift}"] = err = max_abs_diff(at_ps * cc + seed_rotate_half(at_ps) * sc, at_p)
        check(err < TOL_ROPE_HF, f"test 1: correction by {shift} misses HF's key at {p} by {err}")
    checks["test1_seed_correction_vs_hf_rotary_max_abs"] = t1
    k64 = torch.randn(1, 2, 10, seed.head_dim, generator=g, dtype=torch.float64)
    cf, sf = (x.double() for x in seed_build_rope_correction(-15, seed.head_dim, seed.theta))
    ci, si = (x.double() for x in seed_build_rope_correction(15, seed.head_dim, seed.theta))
    rot = k64 * cf + seed_rotate_half(k64) * sf
    checks["test2_roundtrip_float64_max_abs"] = e2 = max_abs_diff(rot * ci + seed_rotate_half(rot) * si, k64)
    check(e2 < 1e-6, f"test 2: float64 roundtrip error {e2}")

    # ---- bare cache and scoring (seed test 5) --------------------------------------------------
    ctx_len, bare, bare_ids = seed.build_kv_cache(document)
    tokens["bare"] = tok.tokens(bare_ids)
    r_bare = d.cache("bare", bare, bare_ids, list(range(ctx_len)), "build_kv_cache(document_template(PASSAGE))")
    wrong = seed.score_answer_with_cache(caches.clone(bare), ctx_len, query_prompt, WRONG_ANSWER)
    d.put("bare/nll_wrong", f64(wrong["nll"]), "score_answer_with_cache(bare, ..., WRONG_ANSWER)")
    d.put("bare/token_nll_wrong", wrong["token_nll"], "per-token NLL of WRONG_ANSWER tokens 1..")
    checks["test5_correct_lt_wrong"] = bool(r_bare["nll"] < wrong["nll"])
    # The seed's scoring extends the cache it is given (the trap kvprime removes).
    mutated = caches.clone(bare)
    seed.score_answer_with_cache(mutated, ctx_len, query_prompt, ANSWER)
    checks["seed_score_cache_len_before_after"] = [ctx_len, caches.length(mutated)]
    # Determinism: the same cache twice.
    _, bare2, _ = seed.build_kv_cache(document)
    checks["bare_rebuild_max_abs"] = e = max(layer_max_abs(caches, bare, bare2, 0, slice(None)) +
                                             layer_max_abs(caches, bare, bare2, 1, slice(None)))
    check(e == 0.0, f"two builds of the same bare cache differ by {e}: CPU float32 should be deterministic")

    # Test 5 as the seed wrote it: re-tokenize context + query_prompt + ANSWER as one string.
    full_ids = tok.encode(document + query_prompt + ANSWER, True)
    t = torch.tensor([full_ids], dtype=torch.int64)
    with torch.no_grad():
        logits = model(input_ids=t, attention_mask=torch.ones_like(t), return_dict=True).logits[0].float()
    a0 = len(full_ids) - len(a_ids)
    seed_full = torch.nn.CrossEntropyLoss(reduction="sum")(logits[a0:-1], t[0, a0 + 1:]).item() / (len(a_ids) - 1)
    d.put("seed/test5_full/ids", i64(full_ids), "document + query_prompt + ANSWER tokenized as ONE string (the seed's test 5)")
    d.put("seed/test5_full/nll", f64(seed_full),
          "the seed's full-forward NLL: last len(answer_ids) tokens of seed/test5_full/ids, tokens 1.. scored")
    seams_differ = full_ids != bare_ids + q_ids + a_ids
    checks["test5_retokenized_seams_differ"] = seams_differ
    tokens["test5_full"] = tok.tokens(full_ids)
    # kvprime's comparison: the identical ids, one forward.
    same = bare_ids + q_ids + a_ids
    t = torch.tensor([same], dtype=torch.int64)
    with torch.no_grad():
        logits = model(input_ids=t, attention_mask=torch.ones_like(t), return_dict=True).logits[0].float()
    a0 = len(same) - len(a_ids)
    per = F.cross_entropy(logits[a0:-1], t[0, a0 + 1:], reduction="none")
    identical = float(per.double().mean())
    d.put("kvprime/identical_ids/nll", f64(identical),
          "one forward over bare/ids + score/query_ids + score/answer_ids; mean NLL of answer tokens 1..")
    checks["test5_cached_vs_identical_ids_rel"] = rel = abs(r_bare["nll"] - identical) / abs(identical)
    check(rel < TOL_REL, f"cached score {r_bare['nll']} != full forward on identical ids {identical}")
    checks["test5_cached_vs_seed_retokenized_rel"] = abs(r_bare["nll"] - seed_full) / abs(seed_full)

    # BOS-only cache (kvprime's PMI baseline).
    bos_cache = seed.forward_cache([tok.bos_id])
    r_bos = d.cache("kvprime/bos_only", bos_cache, [tok.bos_id], [0], "a cache holding only BOS (PMI baseline)")
    d.put("kvprime/pmi", f64(r_bare["nll"] - r_bos["nll"]), "bare/nll - kvprime/bos_only/nll")

    # Roundtrip noise (seed test 3) on the real bare cache, float32.
    rt_seed = seed.apply_rope_roundtrip_noise(caches.clone(bare), ROUNDTRIP_OFFSET)
    rt_kvp = kvp.roundtrip(bare, ROUNDTRIP_OFFSET)
    for name, c, what in [("seed/roundtrip", rt_seed, "apply_rope_roundtrip_noise(bare, 10), single theta"),
                          ("kvprime/roundtrip", rt_kvp, "bare keys of slots 1.. rotated +10 and back with the model's inv_freq")]:
        kv = caches.kv(c)
        for il in layers:
            d.put(f"{name}/k/{il}", kv[il][0].float(), f"{what}: keys of layer {il}")
        bos_same = all(torch.equal(kc[:, :, :1], kb[:, :, :1]) for (kc, _), (kb, _) in zip(kv, caches.kv(bare)))
        check(bos_same, f"{name}: BOS keys changed")
        checks[f"{name.replace('/', '_')}_vs_bare_max_rel"] = e = max(layer_max_rel(caches, c, bare, 0, slice(None)))
        check(e <= TOL_REL, f"{name}: a float32 roundtrip moved the keys by {e} (relative)")

    # ---- surrogate-primed caches (seed test 8) -------------------------------------------------
    surr_prefix = TEMPLATES["surrogate_template"].format(surrogate=SURROGATE)
    surr_joint, _, _ = tok.joint(surr_prefix, document)
    d.put("surrogate/joint_ids", i64(surr_joint), "surrogate prefix + document, tokenized together with BOS")
    tokens["surrogate_joint"] = tok.tokens(surr_joint)
    tokens["surrogate_prefix_alone"] = tok.tokens(tok.encode(surr_prefix, True))
    for correct, tag in [(False, "surrogate_truncated"), (True, "surrogate_corrected")]:
        s = seed.build_truncated_kv_cache(SURROGATE, PASSAGE, correct)
        d.cache(f"seed/{tag}", s["cache"], s["ids"], s["positions"],
                f"build_truncated_kv_cache{'_corrected' if correct else ''}(SURROGATE, PASSAGE)")
        d.put(f"seed/{tag}/prefix_len", i64([s["prefix_len"]]), "the surrogate prefix tokenized alone, with BOS")
        d.put(f"seed/{tag}/keep_len", i64([s["keep_len"]]), "returned keep_len = 1 + full_len - prefix_len")
        k = kvp.truncated(surr_prefix, document, correct)
        d.cache(f"kvprime/{tag}", k["cache"], k["ids"], k["positions"],
                f"Primer::build_truncated_kv_cache{'_corrected' if correct else ''}(SURROGATE, PASSAGE)")
        d.put(f"kvprime/{tag}/boundary", i64([k["boundary"]]), "BOS + prefix tokens in the joint tokenization")
        checks[f"{tag}_seed_prefix_len_vs_kvprime_boundary"] = [s["prefix_len"], k["boundary"]]
        if s["prefix_len"] == k["boundary"]:
            # Same slots: only the rotation differs (single theta vs the model's inv_freq).
            e = max(layer_max_rel(caches, s["cache"], k["cache"], 0, slice(None)) +
                    layer_max_rel(caches, s["cache"], k["cache"], 1, slice(None)))
            checks[f"{tag}_seed_vs_kvprime_max_rel"] = e
            check(e <= TOL_REL, f"{tag}: seed and kvprime caches differ by {e} (relative) on the same slots")

    # ---- the boundary trap (custom templates, see TRAP_*) --------------------------------------
    trap_prefix = TRAP_SURROGATE_TEMPLATE.format(surrogate=SURROGATE)
    trap_doc = TRAP_DOCUMENT_TEMPLATE.format(document=PASSAGE)
    s = seed.truncated(trap_prefix, trap_doc, True)
    d.cache("seed/trap_corrected", s["cache"], s["ids"], s["positions"],
            "build_truncated_kv_cache_corrected(SURROGATE, PASSAGE, surrogate_prefix_template="
            "TRAP_SURROGATE_TEMPLATE, document_template=TRAP_DOCUMENT_TEMPLATE)")
    d.put("seed/trap_corrected/prefix_len", i64([s["prefix_len"]]), "the trap prefix tokenized alone, with BOS")
    d.put("seed/trap_corrected/keep_len", i64([s["keep_len"]]), "returned keep_len")
    k = kvp.truncated(trap_prefix, trap_doc, True)
    d.cache("kvprime/trap_corrected", k["cache"], k["ids"], k["positions"],
            "Primer::build_truncated_kv_cache_corrected(SURROGATE, PASSAGE) with surrogate_template = "
            "TRAP_SURROGATE_TEMPLATE, document_template = TRAP_DOCUMENT_TEMPLATE")
    d.put("kvprime/trap_corrected/boundary", i64([k["boundary"]]), "BOS + prefix tokens in the joint tokenization")
    checks["trap_seed_prefix_len_vs_kvprime_boundary"] = [s["prefix_len"], k["boundary"]]
    tokens["trap_joint"] = tok.tokens(k["full_ids"])
    tokens["trap_prefix_alone"] = tok.tokens(tok.encode(trap_prefix, True))
    check(s["prefix_len"] == k["boundary"] + 1,
          f"the trap case should cut one slot more in the seed (prefix alone {s['prefix_len']}, joint "
          f"boundary {k['boundary']}); tokens {tokens['trap_joint'][:k['boundary'] + 2]}")
    check(s["ids"][1:] == k["ids"][2:], "the seed's trap cache should hold kvprime's document minus its first token")

    # ---- variable prefixes (seed test 9) -------------------------------------------------------
    d.put("variable_prefix/count", i64([len(VARIABLE_PREFIXES)]), "number of variable prefixes")
    last_values = []
    for i, prefix in enumerate(VARIABLE_PREFIXES):
        s = seed.build_truncated_cache_variable_prefix(prefix, PASSAGE)
        d.cache(f"seed/variable_prefix/{i}", s["cache"], s["ids"], s["positions"],
                f"build_truncated_cache_variable_prefix(VARIABLE_PREFIXES[{i}], PASSAGE)")
        d.put(f"seed/variable_prefix/{i}/prefix_token_len", i64([s["prefix_len"]]),
              "returned prefix_token_len: prefix + ' ' tokenized alone, with BOS")
        d.put(f"seed/variable_prefix/{i}/keep_len", i64([s["keep_len"]]), "returned keep_len")
        k = kvp.truncated(prefix + TEMPLATES["prefix_separator"], document, True)
        d.cache(f"kvprime/variable_prefix/{i}", k["cache"], k["ids"], k["positions"],
                f"Primer::build_truncated_cache_variable_prefix(VARIABLE_PREFIXES[{i}], PASSAGE)")
        d.put(f"kvprime/variable_prefix/{i}/prefix_token_len", i64([k["boundary"]]),
              "BOS + prefix tokens in the joint tokenization (TruncatedCache::prefix_token_len)")
        checks[f"variable_prefix_{i}_seed_prefix_len_vs_kvprime_boundary"] = [s["prefix_len"], k["boundary"]]
        tokens[f"variable_prefix_{i}_joint"] = tok.tokens(k["full_ids"])
        tokens[f"variable_prefix_{i}_alone"] = tok.tokens(tok.encode(prefix + " ", True))
        last_values.append(caches.kv(k["cache"])[n_layers - 1][1])
    m = min(v.shape[2] for v in last_values[1:])
    checks["test9_different_prefixes_mean_abs_last_layer_values"] = float(
        (last_values[1][:, :, :m] - last_values[2][:, :, :m]).abs().mean())

    # ---- matched caches (seed tests 6, 7) ------------------------------------------------------
    matched = {"seed": seed.matched(MATCHED_PREFIX, PASSAGE), "kvprime": kvp.matched(MATCHED_PREFIX, PASSAGE)}
    for who, mres in matched.items():
        what = ("the seed's test 6 (cut at the prefix-alone count)" if who == "seed"
                else "Primer::build_matched_caches(MATCHED_PREFIX, PASSAGE)")
        d.cache(f"{who}/matched/bare", mres["bare"], mres["ids"], mres["positions"], f"{what}: bare cache")
        d.cache(f"{who}/matched/primed", mres["primed"], mres["ids"], mres["positions"], f"{what}: primed cache")
        cut = mres["prefix_len"] if who == "seed" else mres["boundary"]
        d.put(f"{who}/matched/prefix_token_len", i64([cut]), f"{what}: BOS + prefix slots cut away")
        tokens[f"matched_{who}_doc"] = tok.tokens(mres["ids"])
        k0 = layer_max_rel(caches, mres["primed"], mres["bare"], 0, slice(1, None))
        v0 = layer_max_rel(caches, mres["primed"], mres["bare"], 1, slice(1, None))
        bos = layer_max_rel(caches, mres["primed"], mres["bare"], 0, slice(0, 1))
        checks[f"test6_{who}_layer0_corrected_keys_vs_bare_max_rel"] = k0[0]
        checks[f"test6_{who}_key_divergence_per_layer_max_rel"] = k0
        checks[f"test6_{who}_bos_keys_max_rel"] = max(bos)
        checks[f"test7_{who}_value_divergence_per_layer_max_rel"] = v0
        check(k0[0] <= TOL_REL, f"{who} matched: layer-0 corrected keys differ from bare by {k0[0]} (relative)")
        check(max(bos) <= TOL_REL, f"{who} matched: BOS keys differ by {max(bos)} (relative)")
        check(max(v0) > 1e-3, f"{who} matched: the prefix changed no value (max relative {max(v0)})")
    checks["matched_seed_cut_vs_kvprime_boundary"] = [matched["seed"]["prefix_len"], matched["kvprime"]["boundary"]]
    tokens["matched_joint"] = tok.tokens(matched["kvprime"]["full_ids"])
    # Mixing the matched kvprime caches (same document ids, so kvprime allows it).
    km = matched["kvprime"]
    half = list(range(n_layers // 2))
    S = len(km["ids"])
    r = seed.score_answer_with_cache(seed.build_hybrid_cache(km["bare"], km["primed"]), S, query_prompt, ANSWER)
    d.put("kvprime/matched/hybrid_nll", f64(r["nll"]),
          "build_hybrid_cache(keys: kvprime matched bare, values: kvprime matched primed), scored")
    r = seed.score_answer_with_cache(seed.replace_values_at_layers(km["bare"], km["primed"], half), S,
                                     query_prompt, ANSWER)
    d.put("kvprime/matched/replace_values_nll", f64(r["nll"]),
          "replace_values_at_layers(kvprime matched bare, kvprime matched primed, replace_layers), scored")
    d.put("kvprime/matched/replace_layers", i64(half), "the layers whose values replace_values_nll replaced")

    # ---- suffix caches (seed test 11) ----------------------------------------------------------
    plen, bare_passage, bp_ids = seed.build_kv_cache(PASSAGE)
    d.cache("seed/bare_passage", bare_passage, bp_ids, list(range(plen)), "build_kv_cache(PASSAGE)")
    slen, suf, suf_ids = seed.build_suffix_kv_cache(PASSAGE, SUFFIX, SEED_SUFFIX_SEPARATOR)
    d.cache("seed/suffix", suf, suf_ids, list(range(slen)),
            "build_suffix_kv_cache(PASSAGE, SUFFIX): PASSAGE + '\\n\\nRelated question: ' + SUFFIX tokenized as one string")
    kv_ids = kvp.suffix_ids(PASSAGE, SUFFIX, TEMPLATES["suffix_template"])
    d.cache("kvprime/suffix", seed.forward_cache(kv_ids), kv_ids, list(range(len(kv_ids))),
            "Primer::build_suffix_kv_cache(PASSAGE, SUFFIX): BOS + PASSAGE ids, then suffix_template(SUFFIX) ids")
    seed_tpl_ids = kvp.suffix_ids(PASSAGE, SUFFIX, SEED_SUFFIX_SEPARATOR + "{suffix}")
    d.put("kvprime/suffix_seed_template/ids", i64(seed_tpl_ids),
          "kvprime's split tokenization with suffix_template = '\\n\\nRelated question: {suffix}'")
    checks["suffix_seed_joint_equals_kvprime_split_tokenization"] = seed_tpl_ids == suf_ids
    check(suf_ids[:plen] == bp_ids, "the seed's suffix tokenization changed the passage's tokens")
    suf_head = caches.make([(k[:, :, :plen], v[:, :, :plen]) for k, v in caches.kv(suf)])
    e = max(layer_max_rel(caches, suf_head, bare_passage, 0, slice(None)) +
            layer_max_rel(caches, suf_head, bare_passage, 1, slice(None)))
    checks["test11_suffix_passage_part_vs_bare_max_rel"] = e
    check(e <= TOL_REL, f"suffix cache's passage part differs from the bare cache by {e} (relative)")
    tokens["seed_suffix"] = tok.tokens(suf_ids)

    # ---- BPE boundary cases (seed test 10) -----------------------------------------------------
    d.put("bpe/count", i64([len(BPE_CASES)]), "number of BPE boundary cases")
    for i, (prefix, doc) in enumerate(BPE_CASES):
        ids, b, _ = tok.joint(prefix, doc)
        alone = tok.encode(prefix, True)
        d.put(f"bpe/{i}/joint_ids", i64(ids), f"BPE_CASES[{i}]: prefix + document with BOS")
        d.put(f"bpe/{i}/prefix_alone_ids", i64(alone), f"BPE_CASES[{i}]: prefix alone with BOS")
        d.put(f"bpe/{i}/doc_alone_ids", i64(tok.encode(doc, True)), f"BPE_CASES[{i}]: document alone with BOS")
        d.put(f"bpe/{i}/boundary", i64([b]), f"BPE_CASES[{i}]: kvprime's boundary (offsets)")
        checks[f"test10_case{i}_seed_count_vs_boundary"] = [len(alone), b]
        checks[f"test10_case{i}_doc_alone_equals_joint_tail"] = tok.encode(doc, True)[1:] == ids[b:]
        tokens[f"bpe_{i}_joint"] = tok.tokens(ids)
        tokens[f"bpe_{i}_alone"] = tok.tokens(alone)

    # ---- write ---------------------------------------------------------------------------------
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_fp, model_fp = kvprime_model_fingerprint(model_dir)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    try:
        model_rel = str(model_dir.relative_to(repo))
    except ValueError:
        model_rel = str(model_dir)
    metadata = {
        "fixture_version": FIXTURE_VERSION,
        "script": "tools/make_seed_golden.py",
        "transformers_version": hf.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
        "safetensors_version": getattr(safetensors, "__version__", "unknown"),
        "python_version": platform.python_version(),
        "device": "cpu",
        "dtype": "float32",
        "attn_implementation": "eager",
        "date": now,
        "model_dir": model_rel,
        "kvprime_checkpoint_fingerprint": ckpt_fp,
        "kvprime_model_fingerprint": model_fp,
        "tokenizer_json_fnv1a64": f"{fnv1a64((model_dir / 'tokenizer.json').read_bytes()):016x}",
        "weights_abs_sum": repr(wsum),
        "tokenizer_loaded_with": tok.loaded_with,
        "passage": PASSAGE, "query": QUERY, "answer": ANSWER, "wrong_answer": WRONG_ANSWER,
        "surrogate": SURROGATE, "matched_prefix": MATCHED_PREFIX, "suffix": SUFFIX,
        "seed_suffix_separator": SEED_SUFFIX_SEPARATOR, "roundtrip_offset": str(ROUNDTRIP_OFFSET),
        "trap_surrogate_template": TRAP_SURROGATE_TEMPLATE, "trap_document_template": TRAP_DOCUMENT_TEMPLATE,
        "query_prompt": query_prompt, "document": document,
        **{f"variable_prefix_{i}": p for i, p in enumerate(VARIABLE_PREFIXES)},
        **{f"bpe_{i}_prefix": p for i, (p, _) in enumerate(BPE_CASES)},
        **{f"bpe_{i}_document": doc for i, (_, doc) in enumerate(BPE_CASES)},
        **TEMPLATES,
        "kv_layout": "[1, num_key_value_heads, slots, head_dim]; keys after RoPE",
        "nll": "mean over answer tokens 1.. of -log softmax; first answer token not scored (the seed's)",
    }
    path = out_dir / "demo.safetensors"
    save_file(d.t, str(path), metadata=metadata)
    size = path.stat().st_size
    check(size <= MAX_TOTAL_BYTES, f"{path} is {size} bytes > {MAX_TOTAL_BYTES}")

    model_files = {}
    for p in sorted(model_dir.iterdir()):
        if p.is_file() and p.name in ("config.json", "model.safetensors", "tokenizer.json",
                                      "tokenizer_config.json", "generation_config.json"):
            model_files[p.name] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    manifest = {
        **{k: v for k, v in metadata.items() if not k.startswith(("variable_prefix_", "bpe_"))},
        "variable_prefixes": VARIABLE_PREFIXES,
        "bpe_cases": [list(c) for c in BPE_CASES],
        "rope_offsets": ROPE_OFFSETS,
        "rope_positions": ROPE_POSITIONS,
        "model_files": model_files,
        "model_config": {k: getattr(cfg, k, None) for k in ("model_type", "num_hidden_layers", "hidden_size",
                                                            "num_attention_heads", "num_key_value_heads",
                                                            "head_dim", "vocab_size")},
        "output": {"file": path.name, "bytes": size, "sha256": sha256_file(path)},
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
                        "meaning": d.meaning[k]} for k, v in d.t.items()},
        "checks": checks,
        "tokens": tokens,
        "notes": [
            "seed/...: the seed's lib/kv_cache.py semantics (prefix counted alone, single-theta RoPE, "
            "suffix tokenized jointly); kvprime/...: kvprime's definitions (joint-tokenization boundary by "
            "offsets, the model's own inv_freq, passage tokenized as in the bare cache)",
            "NLLs are from the seed's two-step scoring (query forward extending a copy of the cache, then "
            "the answer forward); kvprime scores query + answer in one forward: the same numbers up to "
            "float32 reduction order",
            "checks.seed_score_cache_len_before_after shows the seed's scoring growing the cache it is given",
        ],
    }
    (out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")

    # Summary.
    print()
    print(f"{'case':<34} {'slots':>5} {'nll':>10}")
    for name in sorted(d.t):
        if name.endswith("/nll"):
            case = name[: -len("/nll")]
            slots = d.t[f"{case}/ids"].numel() if f"{case}/ids" in d.t else 0
            print(f"{case:<34} {slots:>5} {float(d.t[name][0]):>10.5f}")
    print()
    for key in sorted(checks):
        if "seed_prefix_len_vs_kvprime_boundary" in key or "seed_count_vs_boundary" in key or "cut_vs" in key:
            print(f"{key}: {checks[key]}")
    print(f"\nwrote {path} ({size / 1e6:.2f} MB, {len(d.t)} tensors) and {out_dir / 'MANIFEST.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
