#!/usr/bin/env python3
"""The seed's pipeline on Hugging Face transformers, on one GPU: the baseline of issue 7.

Loads a checkpoint directory (config.json + safetensors + tokenizer.json; tools/make_random_hf_model.py
makes a random-weight 7B one on the GPU machine) with transformers in bfloat16 (--dtype; float32 for
the exactness reference, the bf16 weights upcast) on CUDA, attention "sdpa" (transformers' default on
CUDA, and what the seed's notebooks got), and measures:

  a. the seed's standard two conditions per sample, batch 1, the way lib/kv_cache.py drove HF
     (functions as re-implemented in tools/make_seed_golden.py):
       bare    build_kv_cache(document_template(passage)): one forward of BOS + document ids,
               use_cache=True; then score_answer_with_cache(cache, ctx_len, query_template(query),
               answer_template(answer)) on a deep copy of the cache: the query forward extends the
               copy (positions continue at ctx_len), then the answer forward; NLL = mean over the
               answer tokens after the first of -log_softmax(logits.float());
       primed  build_truncated_kv_cache_corrected(surrogate, passage): one forward of BOS +
               surrogate_template(surrogate) + document_template(passage) tokenized jointly; keep BOS
               and the document slots; rotate the document keys back by the number of prefix
               tokens with the model's own inv_freq (float64 angles, float32 rotation, cast back to
               bf16: kvprime's Rotary::shift); then scored as above.
     Token ids follow kvprime's rules, so that per-sample NLLs can be compared with kvprime's: the
     primed document starts at the first token of the joint encoding whose end offset lies beyond
     the prefix (make_seed_golden.Tok.joint); the bare cache holds BOS + the document tokenized
     alone (--bare-ids alone: the seed's build_kv_cache and `kvprime run`'s bare condition) or BOS +
     the joint document ids (--bare-ids joint: build_matched_caches).  With the Llama-2 tokenizer
     the two differ ("Document" after "\n\n" jointly, "▁Document" alone); the other rule's bare
     NLL is computed afterwards, untimed, so that compare.py can match whichever kvprime used.
     One warm-up sample, then every sample timed with torch.cuda.synchronize(); tokenization is
     inside the timed region, as it was in the seed.
     Reports ms/sample, samples/s, tokens of model work (prefill + query + answer tokens of both
     conditions), the median per-sample latency and torch.cuda.max_memory_allocated (weights
     included).
     hf_alt (bf16 run; --no-alt skips it): the same two conditions computed again, untimed, by a
     second HF path that differs from (a) only in rounding (other GEMM shapes, attention kernels,
     padding), so that compare.py can calibrate "agrees up to bf16 rounding" on HF itself:
       bare_alt    ONE forward, no cache, of BOS + document + query + answer, rows of --alt-chunk
                   samples right-padded into one batch with an attention mask (the answer's
                   log-probabilities read at the same positions);
       primed_alt  the joint prefills (BOS + prefix + document) batched the same way, each row's
                   cache cut out of the batch, truncated and re-rotated as in (a), then scored with
                   the other scoring form (one forward of query + answer where (a) uses two, and
                   vice versa).
     Both are the same function as (a) in exact arithmetic (right padding leaves the positions and,
     under the causal mask, the attention of real tokens unchanged); the JSON records them as
     nll.<id>.bare_alt / primed_alt.
  b. HF's own batched forward: random ids [32, 160] and [64, 160], no padding, use_cache=False,
     logits of every position (what the model returns by default); best of 3 after a warm-up.
     TFLOP/s counts 2 * n_params_linear * tokens, n_params_linear = weights of every nn.Linear
     (q, k, v, o, gate, up, down of every layer and lm_head); attention scores, softmax, norms and
     the embedding lookup are not counted.
  c. the bf16 GEMM peak: torch.matmul of two 8192 x 8192 bf16 matrices, best of several.

TF32 is switched off explicitly (torch.backends.cuda.matmul.allow_tf32 = False,
torch.backends.cudnn.allow_tf32 = False, float32 matmul precision "highest"): in a float32 run TF32
would round GEMM inputs to 10 mantissa bits and the float32 reference would not be one.  It does not
touch bf16 GEMMs; the JSON records the settings ("precision").  --only-pipeline (the float32
exactness run of bench/gpu_bench.sh) runs (a) and its checks only: no hf_alt, no untimed pass of the
other bare rule, no AutoTokenizer comparison, no (b), no (c).

Output: one JSON (--json-out) with everything above and the per-sample NLLs keyed by sample id
(bench/compare.py reads it together with kvprime's bench_seed JSON).

    python3 bench/hf_seed_baseline.py --model /tmp/mistral7b --data /tmp/bench.jsonl \
        --json-out /tmp/out/hf.json [--samples 256] [--time-budget-s 300]
    python3 bench/hf_seed_baseline.py --model /tmp/mistral7b --data /tmp/bench.jsonl \
        --json-out /tmp/out/hf_f32.json --dtype float32 --only-pipeline --samples 32
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import torch  # noqa: E402

# The seed's functions as tools/make_seed_golden.py re-implements them (Tok.joint: the boundary
# rule; Caches: DynamicCache access for both transformers APIs; seed_rotate_half; the templates).
import make_seed_golden as golden  # noqa: E402

DEVICE = "cuda"  # the benchmark's device; a module constant so that a CPU mock test can swap it


def log(msg: str) -> None:
    print(f"[hf_seed_baseline {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class RawTok(golden.Tok):
    """golden.Tok on `tokenizers` alone (tokenizer.json, what kvprime implements).

    golden.Tok insists that transformers' AutoTokenizer gives the same ids and stops otherwise; a
    benchmark should not die on that, so AutoTokenizer is only compared (auto_tokenizer_agreement).  joint()
    is inherited unchanged: it is the boundary rule kvprime uses.
    """

    def __init__(self, model_dir: Path, bos_id: int):
        from tokenizers import Tokenizer

        self.raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.hf = None
        self.loaded_with = "tokenizers.Tokenizer.from_file(tokenizer.json)"
        self.bos_id = bos_id

    def encode(self, text: str, special: bool) -> list[int]:
        ids = list(self.raw.encode(text, add_special_tokens=special).ids)
        if special:
            golden.check(len(ids) >= 1 and ids[0] == self.bos_id, f"no BOS at the start of {text[:40]!r}: {ids[:4]}")
        return ids


def auto_tokenizer_agreement(hf: Any, model_dir: Path, tok: RawTok, texts: list[tuple[str, bool]]) -> dict[str, Any]:
    """How often transformers' AutoTokenizer (what the seed called) agrees with tokenizer.json."""
    try:
        auto = hf.AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as exc:  # informational only
        return {"checked": 0, "error": f"{type(exc).__name__}: {exc}"}
    bad = []
    for text, special in texts:
        a = list(auto(text, add_special_tokens=special)["input_ids"])
        if a != tok.encode(text, special):
            bad.append(text[:60])
    return {"checked": len(texts), "disagree": len(bad), "examples": bad[:3], "class": type(auto).__name__}


DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def set_precision() -> dict[str, Any]:
    """TF32 off, explicitly (float32 GEMMs and convolutions in full float32); returns the settings."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:  # an unknown attribute raises AssertionError there, not AttributeError
        bf16_rr = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    except (AssertionError, AttributeError):
        bf16_rr = None
    return {"cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            # not changed (the seed ran with torch's defaults); bf16 GEMMs only
            "bf16_reduced_precision_reduction": bf16_rr}


def load_model(hf: Any, model_dir: Path, dtype: torch.dtype = torch.bfloat16, attn: str = "sdpa") -> Any:
    kw: dict[str, Any] = {"attn_implementation": attn}
    kw["dtype" if int(hf.__version__.split(".")[0]) >= 5 else "torch_dtype"] = dtype
    try:
        model = hf.AutoModelForCausalLM.from_pretrained(str(model_dir), device_map=DEVICE, **kw)
    except Exception as exc:  # device_map needs accelerate on some versions: load on CPU, then move
        log(f"device_map='cuda' failed ({type(exc).__name__}: {exc}); loading on CPU and moving")
        model = hf.AutoModelForCausalLM.from_pretrained(str(model_dir), **kw).to(DEVICE)
    model.eval()
    golden.check(next(model.parameters()).dtype == dtype, f"model is {next(model.parameters()).dtype}, not {dtype}")
    golden.check(model.config._attn_implementation == attn, f"attention is {model.config._attn_implementation}")
    return model


class SeedOnHF:
    """The seed's builders and scorer on the GPU (make_seed_golden.Seed / Kvprime, device-aware)."""

    def __init__(self, model: Any, tok: RawTok, caches: golden.Caches, templates: dict[str, str],
                 score_forwards: int):
        self.model = model
        self.tok = tok
        self.c = caches
        self.t = templates
        self.score_forwards = score_forwards
        # extract_and_truncate_cache_with_bos is device-agnostic there; its forward_cache is CPU-only.
        self.golden_seed = golden.Seed(model, tok, caches)
        self.dev = next(model.parameters()).device
        rot = model.model.rotary_emb
        # The model's own frequencies; float64 angles as kvprime's Rotary::shift computes them.
        self.inv_freq64 = rot.inv_freq.detach().to(self.dev).double()
        self.attention_scaling = float(getattr(rot, "attention_scaling", 1.0))
        rp = getattr(model.config, "rope_parameters", None) or {}
        rope_type = rp.get("rope_type", "default") if isinstance(rp, dict) else "default"
        # Scaled RoPE variants (YaRN's attention factor, per-layer bases) need more than one inv_freq
        # rotation; the benchmark model (Mistral) has plain RoPE.
        golden.check(rope_type == "default" and self.attention_scaling == 1.0,
                     f"rope_type {rope_type!r}, attention_scaling {self.attention_scaling}: plain RoPE only")
        golden.check(getattr(model.config, "layer_types", None) is None or len(set(model.config.layer_types)) == 1,
                     "per-layer attention types are not supported here")

    def ids_tensor(self, ids: list[int]) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.int64, device=self.dev)

    def ones(self, n: int) -> torch.Tensor:
        return torch.ones((1, n), dtype=torch.int64, device=self.dev)

    def forward_cache(self, ids: list[int]) -> Any:
        t = self.ids_tensor(ids)
        out = self.model(input_ids=t, attention_mask=self.ones(len(ids)), use_cache=True, return_dict=True)
        return out.past_key_values

    def reposition_with_bos(self, cache: Any, offset: int) -> Any:
        """Keys of slots 1.. rotated by -offset (Kvprime.reposition_with_bos on the device)."""
        if offset == 0:
            return cache
        angles = float(-offset) * self.inv_freq64
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos().float(), emb.sin().float()
        out = []
        for k, v in self.c.kv(cache):
            doc = k[:, :, 1:, :].float()
            rot = (doc * cos + golden.seed_rotate_half(doc) * sin).to(k.dtype)
            out.append((torch.cat([k[:, :, :1, :], rot], dim=2), v))
        return self.c.make(out)

    def score(self, cache: Any, ctx_len: int, q_ids: list[int], a_ids: list[int], forwards: int = 0) -> float:
        """score_answer_with_cache on a deep copy (the seed's callers copied: its scoring extends
        the cache it is given).  forwards: 2 or 1 (0: --score-forwards)."""
        work = self.c.clone(cache)
        a = self.ids_tensor(a_ids)
        nq, na = len(q_ids), len(a_ids)
        if (forwards or self.score_forwards) == 2:  # the seed: query forward, then answer forward
            qo = self.model(input_ids=self.ids_tensor(q_ids), attention_mask=self.ones(ctx_len + nq),
                            past_key_values=work, use_cache=True, return_dict=True)
            ao = self.model(input_ids=a, attention_mask=self.ones(ctx_len + nq + na),
                            past_key_values=qo.past_key_values, use_cache=False, return_dict=True)
            logits = ao.logits[0, :-1, :]
        else:  # one forward of query + answer (kvprime's form)
            o = self.model(input_ids=self.ids_tensor(q_ids + a_ids), attention_mask=self.ones(ctx_len + nq + na),
                           past_key_values=work, use_cache=False, return_dict=True)
            logits = o.logits[0, nq:nq + na - 1, :]
        lp = torch.log_softmax(logits.float(), dim=-1)
        return float(-lp.gather(1, a[0, 1:, None]).mean())

    def bare_ids(self, rule: str, doc: str, joint_ids: list[int], b: int) -> list[int]:
        """BOS + the document ids of the bare cache.  alone: the document tokenized on its own, as
        the seed's build_kv_cache(document_template(passage)) and the bare condition of `kvprime
        run` do; joint: the document ids of the joint encoding (build_matched_caches)."""
        return self.tok.encode(doc, True) if rule == "alone" else [joint_ids[0]] + joint_ids[b:]

    def sample(self, s: dict[str, Any], bare_rule: str) -> dict[str, Any]:
        """Both conditions of one sample; returns the NLLs and the tokens of model work."""
        prefix, doc, qp, ans = self.texts(s)
        q_ids = self.tok.encode(qp, False)
        a_ids = self.tok.encode(ans, False)
        golden.check(len(a_ids) >= 2, f"{s['id']}: answer {s['answer']!r} has < 2 tokens")
        ids, b, _ = self.tok.joint(prefix, doc)
        doc_len = len(ids) - b
        bare_ids = self.bare_ids(bare_rule, doc, ids, b)
        # bare: build_kv_cache, then score
        bare = self.forward_cache(bare_ids)
        nll_bare = self.score(bare, len(bare_ids), q_ids, a_ids)
        # primed: build_truncated_kv_cache_corrected, then score
        primed = self.reposition_with_bos(
            self.golden_seed.extract_and_truncate_cache_with_bos(self.forward_cache(ids), doc_len), b - 1)
        nll_primed = self.score(primed, 1 + doc_len, q_ids, a_ids)
        tokens = len(bare_ids) + len(ids) + 2 * (len(q_ids) + len(a_ids))
        return {"bare": nll_bare, "primed": nll_primed, "tokens": tokens}

    def bare_only(self, s: dict[str, Any], bare_rule: str) -> tuple[float, bool]:
        """(bare NLL under `bare_rule`, whether its ids differ from the other rule's)."""
        prefix, doc, qp, ans = self.texts(s)
        ids, b, _ = self.tok.joint(prefix, doc)
        mine = self.bare_ids(bare_rule, doc, ids, b)
        other = self.bare_ids("joint" if bare_rule == "alone" else "alone", doc, ids, b)
        if mine == other:
            return math.nan, False
        nll = self.score(self.forward_cache(mine), len(mine), self.tok.encode(qp, False), self.tok.encode(ans, False))
        return nll, True

    def texts(self, s: dict[str, Any]) -> tuple[str, str, str, str]:
        """(prefix, document, query prompt, answer) as sample() builds them."""
        surrogate = s["surrogates"][0] if s.get("surrogates") else s["query"]
        return (self.t["surrogate_template"].format(surrogate=surrogate),
                self.t["document_template"].format(document=s["passage"]),
                self.t["query_template"].format(query=s["query"]),
                self.t["answer_template"].format(answer=s["answer"]))

    def padded(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention_mask) [len(rows), longest], right-padded (with BOS: any valid id; masked).
        Right padding keeps every real token's position (0, 1, ...) and, under the causal mask, the
        keys it attends to: only the GEMM shapes and the attention kernel change."""
        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), self.tok.bos_id, dtype=torch.int64)
        mask = torch.zeros((len(rows), n), dtype=torch.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
            mask[i, :len(r)] = 1
        return ids.to(self.dev), mask.to(self.dev)

    def alt_chunk(self, chunk: list[dict[str, Any]], bare_rule: str) -> dict[str, dict[str, float]]:
        """hf_alt for a few samples: {id: {"bare_alt", "primed_alt"}} (see the module docstring)."""
        enc = []
        for s in chunk:
            prefix, doc, qp, ans = self.texts(s)
            ids, b, _ = self.tok.joint(prefix, doc)
            enc.append((s, self.bare_ids(bare_rule, doc, ids, b), ids, b,
                        self.tok.encode(qp, False), self.tok.encode(ans, False)))
        out: dict[str, dict[str, float]] = {str(s["id"]): {} for s, *_ in enc}
        # bare: one cache-free forward of the whole sequence, batched
        ids, mask = self.padded([bare + q + a for _, bare, _, _, q, a in enc])
        logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False, return_dict=True).logits
        for i, (s, bare, _, _, q, a) in enumerate(enc):
            a0 = len(bare) + len(q)
            lp = torch.log_softmax(logits[i, a0:a0 + len(a) - 1, :].float(), dim=-1)
            tgt = torch.tensor(a[1:], dtype=torch.int64, device=self.dev)
            out[str(s["id"])]["bare_alt"] = float(-lp.gather(1, tgt[:, None]).mean())
        del logits
        # primed: batched joint prefill; each row's cache cut out, truncated, re-rotated, scored
        ids, mask = self.padded([joint for _, _, joint, _, _, _ in enc])
        cache = self.model(input_ids=ids, attention_mask=mask, use_cache=True, return_dict=True).past_key_values
        kv = self.c.kv(cache)
        for i, (s, _, joint, b, q, a) in enumerate(enc):
            row = self.c.make([(k[i:i + 1, :, :len(joint), :], v[i:i + 1, :, :len(joint), :]) for k, v in kv])
            doc_len = len(joint) - b
            primed = self.reposition_with_bos(self.golden_seed.extract_and_truncate_cache_with_bos(row, doc_len), b - 1)
            out[str(s["id"])]["primed_alt"] = self.score(primed, 1 + doc_len, q, a, forwards=3 - self.score_forwards)
        return out

    def checks(self, s: dict[str, Any]) -> dict[str, Any]:
        """Structural checks on one sample (bench_seed's, so that a wrong HF side shows up as such):
        layer-0 keys of the corrected primed cache vs the bare cache (same ids; layer 0 sees no
        prefix, so only the re-rotation differs), and the cached bare NLL vs one forward over the
        identical ids.  bf16 bound 2e-2 relative, as bench_seed: one bf16 rounding of a rotation or
        of matmul outputs of different shapes; float32: 1e-5, as bench_seed."""
        prefix, doc, qp, ans = self.texts(s)
        ids, b, _ = self.tok.joint(prefix, doc)
        q_ids, a_ids = self.tok.encode(qp, False), self.tok.encode(ans, False)
        bare_ids = self.bare_ids("joint", doc, ids, b)  # the layer-0 comparison needs identical ids
        bare = self.forward_cache(bare_ids)
        primed = self.reposition_with_bos(
            self.golden_seed.extract_and_truncate_cache_with_bos(self.forward_cache(ids), len(ids) - b), b - 1)
        kb, kp = self.c.kv(bare)[0][0].double(), self.c.kv(primed)[0][0].double()
        layer0 = float((kp - kb).abs().max() / kb.abs().max().clamp_min(1e-30))
        cached = self.score(bare, len(bare_ids), q_ids, a_ids)
        full = self.model(input_ids=self.ids_tensor(bare_ids + q_ids + a_ids), use_cache=False, return_dict=True)
        a = self.ids_tensor(a_ids)
        a0 = len(bare_ids) + len(q_ids)
        lp = torch.log_softmax(full.logits[0, a0:a0 + len(a_ids) - 1, :].float(), dim=-1)
        nll_full = float(-lp.gather(1, a[0, 1:, None]).mean())
        rel = abs(cached - nll_full) / max(abs(nll_full), 1e-12)
        bound = 1e-5 if next(self.model.parameters()).dtype == torch.float32 else 2e-2
        return {"sample": str(s["id"]), "bound": bound, "layer0_keys": layer0, "cached_vs_full": rel,
                "nll_cached": cached, "nll_full": nll_full, "ok": layer0 < bound and rel < bound}


def read_samples(path: Path, n: int) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
            if len(out) >= n:
                break
    golden.check(len(out) > 0, f"no samples in {path}")
    return out


def cuda_time(fn: Any) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_batched_forward(model: Any, batch: int, seq: int, n_params_linear: int, reps: int = 3) -> dict[str, Any]:
    vocab = model.config.vocab_size
    g = torch.Generator(device=DEVICE).manual_seed(1000 * batch + seq)
    ids = torch.randint(3, vocab, (batch, seq), generator=g, device=DEVICE)

    def once() -> None:
        out = model(input_ids=ids, use_cache=False, return_dict=True)
        golden.check(out.logits.shape[:2] == (batch, seq), f"logits {tuple(out.logits.shape)}")

    with torch.no_grad():
        once()  # warm-up: cuBLAS handles, kernel choices for these shapes
        times = [cuda_time(once) for _ in range(reps)]
    best = min(times)
    tokens = batch * seq
    return {"batch": batch, "seq": seq, "tokens": tokens, "times_s": times, "best_s": best,
            "tokens_per_s": tokens / best, "tflops": 2.0 * n_params_linear * tokens / best / 1e12}


def bench_gemm(n: int = 8192, inner: int = 10, reps: int = 5) -> dict[str, Any]:
    g = torch.Generator(device=DEVICE).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(n, n, generator=g, device=DEVICE, dtype=torch.bfloat16)
    c = torch.empty(n, n, device=DEVICE, dtype=torch.bfloat16)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    best = math.inf
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            torch.matmul(a, b, out=c)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3 / inner)
    del a, b, c
    return {"n": n, "dtype": "bfloat16", "best_s": best, "tflops": 2.0 * n ** 3 / best / 1e12,
            "method": f"torch.matmul(out=), best of {reps} x {inner} calls (CUDA events)"}


def main(argv: list[str] | None = None) -> int:
    t_start = time.time()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True,
                    help="checkpoint directory (config.json, safetensors, tokenizer.json)")
    ap.add_argument("--data", type=Path, required=True, help="JSONL from bench/make_bench_data.py")
    ap.add_argument("--json-out", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--time-budget-s", type=float, default=0.0,
                    help="stop the sample loop early so that the whole script ends within this many seconds "
                         "(0: no limit); the JSON records how many samples ran")
    ap.add_argument("--score-forwards", type=int, choices=[1, 2], default=2,
                    help="2: query forward then answer forward (the seed); 1: one forward of query + answer")
    ap.add_argument("--bare-ids", choices=["alone", "joint"], default="alone",
                    help="ids of the timed bare cache: alone = BOS + the document tokenized on its own (the "
                         "seed's build_kv_cache, `kvprime run`'s bare condition); joint = BOS + the document ids "
                         "of the joint encoding (build_matched_caches). The other rule's bare NLL is computed "
                         "afterwards, untimed, when time allows (nll.<id>.bare_alone / bare_joint)")
    ap.add_argument("--no-other-bare", action="store_true", help="skip the untimed pass of the other bare rule")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16",
                    help="model dtype (float32: the exactness reference; the checkpoint's bf16 weights upcast)")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager)")
    ap.add_argument("--no-alt", action="store_true", help="skip hf_alt (the second HF path, untimed)")
    ap.add_argument("--alt-chunk", type=int, default=32, help="samples per batched forward of hf_alt")
    ap.add_argument("--batched", default="32x160,64x160", help="shapes of (b), BxT comma-separated ('' skips)")
    ap.add_argument("--skip-gemm", action="store_true")
    ap.add_argument("--only-pipeline", action="store_true",
                    help="(a) and its checks only: implies --no-alt --no-other-bare --batched '' --skip-gemm and "
                         "no AutoTokenizer comparison (the float32 exactness run)")
    args = ap.parse_args(argv)
    if args.only_pipeline:
        args.no_alt, args.no_other_bare, args.batched, args.skip_gemm = True, True, "", True
    golden.check(args.alt_chunk > 0, "--alt-chunk must be positive")
    # Seconds the loop leaves for what follows it when --time-budget-s is given: checks and the JSON
    # (10), hf_alt (~10-20 s for 256 samples of a 7B model), (b) and (c) (~30).
    reserve_s = 10 + 20 * (not args.no_alt) + 30 * (bool(args.batched) or not args.skip_gemm)

    def time_left() -> float:
        return math.inf if args.time_budget_s <= 0 else args.time_budget_s - (time.time() - t_start)

    import tokenizers
    import transformers as hf

    golden.check(torch.cuda.is_available(), "CUDA is not available")
    precision = set_precision()
    # Templates: kvprime's ExperimentConfig defaults, read from the header kvprime is built with.
    header = REPO / "include" / "kvprime" / "prime" / "experiment_config.h"
    cpp = golden.cpp_string_defaults(header)
    templates = {k: cpp.get(k, v) for k, v in golden.TEMPLATES.items()}
    for k, v in golden.TEMPLATES.items():
        if cpp.get(k) != v:
            log(f"WARNING: {header.name}: {k} = {cpp.get(k)!r}, make_seed_golden.py has {v!r}; using the header's")

    log(f"torch {torch.__version__}, transformers {hf.__version__}, {torch.cuda.get_device_name()}, "
        f"{args.dtype}, precision {precision}")
    t0 = time.time()
    model = load_model(hf, args.model, DTYPES[args.dtype], args.attn)
    load_s = time.time() - t0
    torch.cuda.synchronize()
    weights_bytes = torch.cuda.memory_allocated()
    n_params = sum(p.numel() for p in model.parameters())
    n_params_linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings()
    n_params_lm_head = int(head.weight.numel()) if head is not None else 0
    log(f"loaded {type(model).__name__} ({n_params / 1e9:.2f}B params, {n_params_linear / 1e9:.2f}B in "
        f"linear layers, {args.dtype}) in {load_s:.1f}s, attention {model.config._attn_implementation}")

    tok = RawTok(args.model, int(model.config.bos_token_id))
    seed = SeedOnHF(model, tok, golden.Caches(hf), templates, args.score_forwards)
    samples = read_samples(args.data, args.samples)

    # ---- (a) the seed's pipeline, batch 1 ----
    torch.cuda.reset_peak_memory_stats()
    nll: dict[str, dict[str, float]] = {}
    lat_ms: list[float] = []
    tokens = 0
    stopped_early = False
    with torch.no_grad():
        seed.sample(samples[0], args.bare_ids)  # warm-up
        torch.cuda.synchronize()
        loop_start = time.perf_counter()
        for i, s in enumerate(samples):
            # Keep reserve_s for hf_alt, (b), (c) and the JSON when a budget is given.
            if i > 0 and time_left() < reserve_s:
                stopped_early = True
                log(f"time budget: stopping after {i} of {len(samples)} samples")
                break
            t1 = time.perf_counter()
            r = seed.sample(s, args.bare_ids)
            torch.cuda.synchronize()
            lat_ms.append(1e3 * (time.perf_counter() - t1))
            nll[str(s["id"])] = {"bare": r["bare"], "primed": r["primed"], f"bare_{args.bare_ids}": r["bare"]}
            tokens += r["tokens"]
        seconds = time.perf_counter() - loop_start
        peak = torch.cuda.max_memory_allocated()
        checks = seed.checks(samples[0])
    n_done = len(lat_ms)
    # hf_alt: the same NLLs by a second HF path that differs only in rounding (untimed; see the docstring).
    alt = {"skipped": args.no_alt, "samples": 0, "stopped_early": False, "seconds": 0.0, "chunk": args.alt_chunk,
           "score_forwards_primed": 3 - args.score_forwards,
           "bare": "one cache-free forward of BOS + document + query + answer, right-padded batches",
           "primed": "batched right-padded joint prefill, per-row cache cut out, truncated, re-rotated, "
                     f"scored with {3 - args.score_forwards} forward(s)"}
    if not args.no_alt:
        t_alt = time.perf_counter()
        keep = 10 + 30 * (bool(args.batched) or not args.skip_gemm)
        with torch.no_grad():
            for c0 in range(0, n_done, args.alt_chunk):
                if time_left() < keep:
                    alt["stopped_early"] = True
                    log(f"time budget: hf_alt stops after {alt['samples']} of {n_done} samples")
                    break
                try:
                    for i, v in seed.alt_chunk(samples[c0:min(c0 + args.alt_chunk, n_done)], args.bare_ids).items():
                        nll[i].update(v)
                        alt["samples"] += 1
                except Exception as exc:  # noqa: BLE001 -- hf_alt must not cost the run its JSON;
                    # the calibration is then missing or partial, and compare.py says so.
                    alt["error"] = f"chunk {c0 // args.alt_chunk}: {type(exc).__name__}: {exc}"
                    log(f"hf_alt failed, continuing without it: {alt['error']}\n{traceback.format_exc()}")
                    torch.cuda.empty_cache()
                    break
            torch.cuda.synchronize()
        alt["seconds"] = time.perf_counter() - t_alt
        have = [v for v in nll.values() if "bare_alt" in v]
        if have:
            for key in ("bare", "primed"):
                d = [abs(v[f"{key}_alt"] - v[key]) for v in have]
                alt[f"{key}_max_abs"], alt[f"{key}_mean_abs"] = max(d), statistics.mean(d)
            log(f"hf_alt: {alt['samples']} samples in {alt['seconds']:.1f}s; |alt - (a)|: bare max "
                f"{alt['bare_max_abs']:.4f} mean {alt['bare_mean_abs']:.4f}, primed max {alt['primed_max_abs']:.4f} "
                f"mean {alt['primed_mean_abs']:.4f}")
    for key in ("bare", "primed"):  # reported, not fatal: the JSON is still written, compare.py fails on it
        bad = [i for i, v in nll.items() if not math.isfinite(v[key])]
        if bad:
            log(f"WARNING: non-finite {key} NLL in {len(bad)} samples, e.g. {bad[:3]}")
    # The other bare rule, untimed: with SentencePiece the two differ ("Document" after "\n\n" in the
    # joint encoding, "▁Document" alone), and compare.py uses whichever rule kvprime's bare follows.
    other = "joint" if args.bare_ids == "alone" else "alone"
    ids_differ = 0
    other_done = 0
    other_stopped = False
    texts: list[tuple[str, bool]] = []
    with torch.no_grad():
        for s in samples[:n_done]:
            if not args.no_other_bare:
                if time_left() < 10 + 30 * (bool(args.batched) or not args.skip_gemm):
                    other_stopped = True
                    break
                x, differ = seed.bare_only(s, other)
                v = nll[str(s["id"])]
                v[f"bare_{other}"] = x if differ else v["bare"]
                ids_differ += int(differ)
                other_done += 1
    for s in samples[:n_done]:
        prefix, doc, qp, ans = seed.texts(s)
        texts += [(prefix + doc, True), (qp, False), (ans, False)]
    other_bare = {"rule": other, "samples": other_done, "ids_differ": ids_differ, "stopped_early": other_stopped,
                  "skipped": args.no_other_bare}
    lat_sorted = sorted(lat_ms)
    pipeline = {
        "samples": n_done, "samples_requested": len(samples), "stopped_early": stopped_early,
        "warmup_sample": str(samples[0]["id"]), "batch": 1, "score_forwards": args.score_forwards,
        "seconds": seconds, "ms_per_sample": 1e3 * seconds / n_done, "samples_per_s": n_done / seconds,
        "tokens": tokens, "tokens_per_s": tokens / seconds,
        "latency_ms_median": statistics.median(lat_ms),
        "latency_ms_p10": lat_sorted[int(0.1 * (n_done - 1))],
        "latency_ms_p90": lat_sorted[int(0.9 * (n_done - 1))],
        "latency_ms": lat_ms,
        "peak_memory_bytes": peak,
        "bare_ids": args.bare_ids,
        "other_bare": other_bare,
        "note": "latency_ms: per sample in data order (both conditions, tokenization included); tokens: "
                "prefill (BOS + document, BOS + prefix + document) + 2 x (query + answer) per sample; "
                "peak_memory_bytes includes the weights",
    }
    log(f"(a) seed pipeline: {n_done} samples in {seconds:.2f}s: {pipeline['ms_per_sample']:.1f} ms/sample, "
        f"{pipeline['samples_per_s']:.2f} samples/s, {pipeline['tokens_per_s']:.0f} tok/s, median latency "
        f"{pipeline['latency_ms_median']:.1f} ms, peak memory {peak / 2**30:.2f} GiB "
        f"(weights {weights_bytes / 2**30:.2f} GiB)")
    log(f"    mean NLL bare {statistics.mean(v['bare'] for v in nll.values()):.4f}, primed "
        f"{statistics.mean(v['primed'] for v in nll.values()):.4f} (bare ids: {args.bare_ids}); other bare rule "
        f"({other}): {other_done} samples, ids differ in {ids_differ}{' (stopped: time)' if other_stopped else ''}")
    log(f"    checks on {checks['sample']}: layer0_keys {checks['layer0_keys']:.3e}, cached_vs_full "
        f"{checks['cached_vs_full']:.3e} (bound {checks['bound']:.0e}) -> {'OK' if checks['ok'] else 'FAILED'}")
    agreement = ({"checked": 0, "skipped": "--only-pipeline"} if args.only_pipeline
                 else auto_tokenizer_agreement(hf, args.model, tok, texts[:300]))
    log(f"    AutoTokenizer vs tokenizer.json: {agreement}")

    # ---- (b) HF's batched forward ----
    batched = []
    for shape in [x for x in args.batched.split(",") if x]:
        bsz, seq = (int(v) for v in shape.lower().split("x"))
        try:
            r = bench_batched_forward(model, bsz, seq, n_params_linear)
            batched.append(r)
            log(f"(b) forward {bsz}x{seq}: best {1e3 * r['best_s']:.1f} ms, {r['tokens_per_s']:.0f} tok/s, "
                f"{r['tflops']:.0f} TFLOP/s (linear layers)")
        except torch.cuda.OutOfMemoryError as exc:
            log(f"(b) forward {bsz}x{seq}: out of memory ({exc})")
            batched.append({"batch": bsz, "seq": seq, "error": "out of memory"})
            torch.cuda.empty_cache()

    # ---- (c) GEMM peak ----
    gemm = None
    if not args.skip_gemm:
        gemm = bench_gemm()
        log(f"(c) bf16 GEMM 8192^3: {gemm['tflops']:.0f} TFLOP/s")

    result = {
        "script": "bench/hf_seed_baseline.py",
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": hf.__version__,
                     "tokenizers": tokenizers.__version__, "python": platform.python_version()},
        "gpu": torch.cuda.get_device_name(),
        "model": str(args.model), "model_class": type(model).__name__,
        "dtype": args.dtype, "attn_implementation": args.attn, "precision": precision, "load_s": load_s,
        "only_pipeline": args.only_pipeline,
        "n_params": n_params, "n_params_linear": n_params_linear, "n_params_lm_head": n_params_lm_head,
        "n_params_linear_counts": "weights of every torch.nn.Linear: q/k/v/o, gate/up/down of every layer, lm_head",
        "weights_bytes": weights_bytes,
        "templates": templates, "data": str(args.data),
        "tokenizer": {"ids_from": tok.loaded_with, "boundary": "make_seed_golden.Tok.joint (offsets, joint encoding)",
                      "auto_tokenizer_agreement": agreement},
        "bare_ids": args.bare_ids,
        "seed_pipeline": pipeline,
        "hf_alt": alt,
        "checks": checks,
        "batched_forward": batched,
        "gemm": gemm,
        "gpu_peak_memory_bytes": peak,
        "nll": nll,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {args.json_out} ({time.time() - t_start:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
