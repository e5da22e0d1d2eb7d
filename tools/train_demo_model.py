#!/usr/bin/env python3
"""Train kvprime's demo model: a small Llama-architecture causal LM and its byte-level BPE tokenizer.

Runs on the GPU machine (torch + transformers + tokenizers + safetensors, no network) in one command:

  python3 tools/train_demo_model.py --corpus data/corpus --dataset data/demo/qa.jsonl \
      --out models/demo --minutes 7

Steps (each fails loudly):
  1. train a byte-level BPE tokenizer (vocab 4096, specials <unk> <s> </s> <pad>) on the corpus,
     save tokenizer.json + tokenizer_config.json, reload them with transformers.AutoTokenizer and
     check that it encodes exactly like the raw tokenizer (BOS added, no EOS);
  2. tokenize prose (data/corpus/prose.txt.gz) and QA samples (data/corpus/qa_train.jsonl.gz +
     the *train* split of the demo dataset, upsampled); the held-out split is never trained on;
  3. pack rows of --seq-len tokens: a row is either whole QA samples followed by prose filler, or
     prose only (--qa-row-fraction); every sample is "<s>" + text + "</s>";
  4. train LlamaForCausalLM (fp32 master weights, bf16 autocast, AdamW, warmup + cosine schedule)
     until the time budget (--minutes) or --steps is reached;
  5. save config.json + model.safetensors (float16, tied embeddings) + tokenizer files +
     training_log.json under --out;
  6. reload the saved model in float32 with from_pretrained and evaluate the held-out demo split:
     NLL of the correct answer vs a mismatched answer, and with vs without the passage
     -> eval.json. Targets (issue 4): correct < mismatched >= 75 %, passage < no passage >= 70 %.

Prompt format = kvprime's defaults: document "Document:\n{passage}", query
"\n\nQuery: {query}\nAnswer:", answer appended with a leading space.
"""
import argparse
import gzip
import json
import math
import os
import platform
import random
import sys
import time

T_SCRIPT0 = time.time()

DOC_TEMPLATE = "Document:\n{passage}"
QUERY_TEMPLATE = "\n\nQuery: {query}\nAnswer:"
NO_PASSAGE_TEMPLATE = "Query: {query}\nAnswer:"
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0, 1, 2, 3


def log(msg):
    print(f"[{time.time() - T_SCRIPT0:7.1f}s] {msg}", flush=True)


def die(msg):
    print(f"ERROR: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def qa_text(passage, query, answer):
    """The exact training text of one QA sample (without BOS/EOS)."""
    return DOC_TEMPLATE.format(passage=passage) + QUERY_TEMPLATE.format(query=query) + " " + answer


def json_safe(x):
    """NaN (an undefined after-first NLL for one-token answers) becomes null: strict JSON."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    return x


def read_jsonl(path):
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                die(f"{path}:{i + 1}: bad JSON: {e}")
    return out


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="folder with prose.txt.gz and qa_train.jsonl.gz")
    ap.add_argument("--dataset", required=True, help="demo QA dataset (JSONL with split train/heldout)")
    ap.add_argument("--out", required=True, help="output folder (models/demo)")
    ap.add_argument("--minutes", type=float, default=7.0, help="training time budget (wall clock)")
    ap.add_argument("--deadline-minutes", type=float, default=9.3,
                    help="hard limit for the whole script; training stops early to keep time for save/eval")
    ap.add_argument("--steps", type=int, default=0, help="fixed number of steps (overrides the time-based schedule)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--tokenizer-chars", type=int, default=30_000_000, help="characters used to train the tokenizer")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=960)
    ap.add_argument("--max-position", type=int, default=512)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=128, help="rows per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.05)
    ap.add_argument("--warmup-steps", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--qa-row-fraction", type=float, default=0.85, help="share of rows that start with QA samples")
    ap.add_argument("--demo-upsample", type=int, default=20, help="copies of each demo train sample per epoch")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (faster steps, ~1 min compile)")
    ap.add_argument("--max-fp16-mb", type=float, default=30.0)
    return ap.parse_args()


# ------------------------------------------------------------------------------------------------
# 1. tokenizer


def train_tokenizer(args, prose, qa, out):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    rng = random.Random(args.seed)
    # training text: QA samples in their prompt format + prose, interleaved, capped in size
    texts = [qa_text(s["passage"], s["query"], s["answer"]) for s in qa[:40000]]
    texts += prose
    rng.shuffle(texts)
    budget, picked = args.tokenizer_chars, []
    for t in texts:
        if budget <= 0:
            break
        picked.append(t)
        budget -= len(t)

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(picked, trainer=trainer, length=len(picked))
    for i, s in enumerate(SPECIALS):
        if tok.token_to_id(s) != i:
            die(f"special token {s} has id {tok.token_to_id(s)}, expected {i}")
    bos_id = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)])
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": args.max_position,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    log(f"tokenizer: vocab {tok.get_vocab_size()} trained on {len(picked)} texts")
    return tok


def check_hf_tokenizer(tok, out, probes):
    """The saved files must load with transformers and encode like the raw tokenizer (+BOS)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    hf = AutoTokenizer.from_pretrained(out)
    hf2 = PreTrainedTokenizerFast.from_pretrained(out)
    bos = tok.token_to_id("<s>")
    for t in probes:
        raw = tok.encode(t, add_special_tokens=False).ids
        for h in (hf, hf2):
            ids = h(t)["input_ids"]
            if ids != [bos] + raw:
                die(f"HF tokenizer ({type(h).__name__}) disagrees on {t[:60]!r}: {ids[:12]} vs {[bos] + raw[:11]}")
        if hf.decode(raw) != t:
            die(f"decode round trip failed: {t[:60]!r} -> {hf.decode(raw)[:60]!r}")
    if hf.bos_token_id != 1 or hf.eos_token_id != 2 or hf.pad_token_id != 3 or hf.unk_token_id != 0:
        die(f"special ids: bos {hf.bos_token_id} eos {hf.eos_token_id} pad {hf.pad_token_id} unk {hf.unk_token_id}")
    log(f"tokenizer: transformers loads it as {type(hf).__name__}; {len(probes)} probes agree")


# ------------------------------------------------------------------------------------------------
# 2-3. data


def encode_all(tok, texts, bos, eos):
    encs = tok.encode_batch(texts, add_special_tokens=False)
    return [[bos] + e.ids + [eos] for e in encs]


class RowPacker:
    """Packs rows of seq_len tokens: whole QA samples + prose filler, or prose only."""

    def __init__(self, qa_ids, prose_ids, seq_len, qa_row_fraction, seed):
        import numpy as np

        self.np = np
        self.qa = [q for q in qa_ids if len(q) <= seq_len]
        dropped = len(qa_ids) - len(self.qa)
        if dropped > len(qa_ids) * 0.05:
            die(f"{dropped} of {len(qa_ids)} QA samples are longer than seq_len {seq_len}")
        self.prose = np.concatenate([np.asarray(p, dtype=np.int32) for p in prose_ids])
        self.seq_len, self.frac = seq_len, qa_row_fraction
        self.rng = random.Random(seed)
        self.prose_pos = 0
        self.epoch = 0
        self.qa_tokens = self.prose_tokens = 0

    def _prose(self, n):
        if self.prose_pos + n > len(self.prose):
            self.prose_pos = self.rng.randrange(0, 1000)
        chunk = self.prose[self.prose_pos:self.prose_pos + n]
        self.prose_pos += n
        self.prose_tokens += n
        return chunk

    def epoch_rows(self):
        """All QA samples once (shuffled), packed, plus prose-only rows in the set proportion."""
        np = self.np
        order = list(range(len(self.qa)))
        self.rng.shuffle(order)
        rows, cur = [], []
        for i in order:
            q = self.qa[i]
            if len(cur) + len(q) > self.seq_len:
                rows.append(np.concatenate([np.asarray(cur, dtype=np.int32), self._prose(self.seq_len - len(cur))]))
                cur = []
            cur.extend(q)
            self.qa_tokens += len(q)
        if cur:
            rows.append(np.concatenate([np.asarray(cur, dtype=np.int32), self._prose(self.seq_len - len(cur))]))
        n_prose_rows = int(len(rows) * (1 - self.frac) / self.frac)
        rows += [self._prose(self.seq_len) for _ in range(n_prose_rows)]
        self.rng.shuffle(rows)
        self.epoch += 1
        return np.stack(rows)


# ------------------------------------------------------------------------------------------------
# 6. evaluation


def answer_nlls(model, prompt_ids, answer_ids, device):
    """(mean NLL over all answer tokens, mean NLL over answer tokens after the first or nan)."""
    import torch

    ids = torch.tensor([prompt_ids + answer_ids], device=device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    n_p, n_a = len(prompt_ids), len(answer_ids)
    lp = torch.log_softmax(logits[0, n_p - 1:n_p + n_a - 1], dim=-1)
    tgt = torch.tensor(answer_ids, device=device)
    nll = -lp.gather(1, tgt[:, None])[:, 0]
    return nll.mean().item(), (nll[1:].mean().item() if n_a > 1 else float("nan"))


def evaluate(model, hf_tok, heldout, device, seed):
    enc = lambda t, special: hf_tok(t, add_special_tokens=special)["input_ids"]
    rng = random.Random(seed + 1)
    n = len(heldout)
    rows = []
    for i, s in enumerate(heldout):
        # mismatched answer: from another held-out sample, with a different answer text
        j = (i + 1 + rng.randrange(n - 1)) % n
        while heldout[j]["answer"].strip().lower() == s["answer"].strip().lower():
            j = (j + 1) % n
        ctx = enc(DOC_TEMPLATE.format(passage=s["passage"]) + QUERY_TEMPLATE.format(query=s["query"]), True)
        nop = enc(NO_PASSAGE_TEMPLATE.format(query=s["query"]), True)
        ans = enc(" " + s["answer"], False)
        wrong = enc(" " + heldout[j]["answer"], False)
        c_all, c_af = answer_nlls(model, ctx, ans, device)
        w_all, w_af = answer_nlls(model, ctx, wrong, device)
        n_all, n_af = answer_nlls(model, nop, ans, device)
        rows.append({"id": s["id"], "answer_tokens": len(ans), "mismatched_id": heldout[j]["id"],
                     "correct_all": c_all, "mismatched_all": w_all, "no_passage_all": n_all,
                     "correct_after_first": c_af, "mismatched_after_first": w_af,
                     "no_passage_after_first": n_af})

    def pct(key_a, key_b):
        pairs = [(r[key_a], r[key_b]) for r in rows if not (math.isnan(r[key_a]) or math.isnan(r[key_b]))]
        if not pairs:
            return {"n": 0, "pct": None}
        return {"n": len(pairs), "pct": 100.0 * sum(a < b for a, b in pairs) / len(pairs),
                "mean_a": sum(a for a, _ in pairs) / len(pairs), "mean_b": sum(b for _, b in pairs) / len(pairs)}

    return rows, {
        "all_tokens": {"correct_lt_mismatched": pct("correct_all", "mismatched_all"),
                       "passage_lt_no_passage": pct("correct_all", "no_passage_all")},
        "after_first_token": {"correct_lt_mismatched": pct("correct_after_first", "mismatched_after_first"),
                              "passage_lt_no_passage": pct("correct_after_first", "no_passage_after_first")},
    }


# ------------------------------------------------------------------------------------------------


def main():
    args = parse_args()
    import numpy as np
    import torch
    import tokenizers
    import transformers
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if not torch.cuda.is_available():
        die("CUDA is not available: this script trains on the GPU machine")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    # ---- inputs
    prose_path = os.path.join(args.corpus, "prose.txt.gz")
    qa_path = os.path.join(args.corpus, "qa_train.jsonl.gz")
    for p in (prose_path, qa_path, args.dataset):
        if not os.path.isfile(p):
            die(f"missing input {p} (build the corpus with tools/build_demo_corpus.sh)")
    with gzip.open(prose_path, "rt", encoding="utf-8") as f:
        prose = [l.rstrip("\n") for l in f if l.strip()]
    qa = read_jsonl(qa_path)
    demo = read_jsonl(args.dataset)
    demo_train = [s for s in demo if s.get("split") == "train"]
    heldout = [s for s in demo if s.get("split") == "heldout"]
    if len(heldout) < 20 or not demo_train:
        die(f"demo dataset: {len(demo_train)} train / {len(heldout)} heldout samples")
    held_passages = {s["passage"] for s in heldout}
    if any(s["passage"] in held_passages for s in demo_train):
        die("a held-out passage also appears in the train split")
    log(f"inputs: {len(prose)} prose paragraphs, {len(qa)} templated QA, demo {len(demo_train)} train / "
        f"{len(heldout)} heldout")

    # ---- 1. tokenizer
    out = args.out
    tok = train_tokenizer(args, prose, qa, out)
    probes = [qa_text(s["passage"], s["query"], s["answer"]) for s in heldout[:10]] + [
        "Document:\nThe quick brown fox", "\n\nQuery: what?\nAnswer:", " 1,234 apples", "naïve café Ünïcode ✓"]
    check_hf_tokenizer(tok, out, probes)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")

    # ---- 2. tokenize
    qa_texts = [qa_text(s["passage"], s["query"], s["answer"]) for s in qa]
    qa_texts += [qa_text(s["passage"], s["query"], s["answer"]) for s in demo_train] * args.demo_upsample
    qa_ids = encode_all(tok, qa_texts, bos, eos)
    prose_ids = encode_all(tok, prose, bos, eos)
    n_qa_tok, n_prose_tok = sum(map(len, qa_ids)), sum(map(len, prose_ids))
    log(f"tokenized: QA {len(qa_ids)} samples / {n_qa_tok / 1e6:.1f}M tokens, prose {n_prose_tok / 1e6:.1f}M tokens")
    packer = RowPacker(qa_ids, prose_ids, args.seq_len, args.qa_row_fraction, args.seed)

    # ---- 4. model
    cfg_kw = dict(
        vocab_size=tok.get_vocab_size(), hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        head_dim=args.hidden // args.heads, max_position_embeddings=args.max_position, rms_norm_eps=1e-5,
        hidden_act="silu", initializer_range=0.02, tie_word_embeddings=True, attention_bias=False,
        mlp_bias=False, bos_token_id=bos, eos_token_id=eos, pad_token_id=tok.token_to_id("<pad>"),
        use_cache=True)
    try:  # transformers 5: RoPE settings live in rope_parameters
        config = LlamaConfig(**cfg_kw, rope_parameters={"rope_type": "default", "rope_theta": args.rope_theta})
    except TypeError:  # transformers 4.x
        config = LlamaConfig(**cfg_kw, rope_theta=args.rope_theta)
    model = LlamaForCausalLM(config).to(device)
    try:
        model.config._attn_implementation = "sdpa"
    except Exception:
        pass
    n_params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    fp16_mb = n_params * 2 / 1e6
    if fp16_mb > args.max_fp16_mb:
        die(f"model has {n_params} parameters = {fp16_mb:.1f} MB in fp16 > {args.max_fp16_mb} MB")
    log(f"model: {n_params / 1e6:.2f}M parameters ({fp16_mb:.1f} MB fp16), config {config.to_dict().get('rope_parameters', None)}")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    step_fn = torch.compile(model) if args.compile else model

    def lr_at(step, frac):
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        c = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * c)

    # ---- training
    t_train0 = time.time()
    train_end = min(t_train0 + args.minutes * 60, T_SCRIPT0 + args.deadline_minutes * 60 - 75)
    budget_s = max(1.0, train_end - t_train0)
    rows = torch.from_numpy(packer.epoch_rows()).to(device=device, dtype=torch.long)
    row_pos, step, tokens_seen = 0, 0, 0
    loss_hist, ema = [], None
    model.train()
    log(f"training: {rows.shape[0]} rows per epoch, batch {args.batch}x{args.seq_len}, budget {budget_s:.0f}s"
        + (f", {args.steps} steps" if args.steps else ""))
    while True:
        now = time.time()
        if args.steps:
            if step >= args.steps:
                break
            frac = step / args.steps
        else:
            if now >= train_end:
                break
            frac = (now - t_train0) / budget_s
        if row_pos + args.batch > rows.shape[0]:
            rows = torch.from_numpy(packer.epoch_rows()).to(device=device, dtype=torch.long)
            row_pos = 0
        x = rows[row_pos:row_pos + args.batch]
        row_pos += args.batch
        lr = lr_at(step, frac)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        step += 1
        tokens_seen += x.numel()
        if step % 50 == 0 or step == 1:
            lv = loss.item()
            if not math.isfinite(lv):
                die(f"non-finite loss at step {step}")
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            loss_hist.append({"step": step, "loss": round(lv, 4), "lr": lr, "grad_norm": round(gnorm.item(), 3),
                              "elapsed_s": round(time.time() - t_train0, 1)})
            if step % 500 == 0 or step == 1:
                el = time.time() - t_train0
                log(f"step {step:6d} loss {lv:.4f} (ema {ema:.4f}) lr {lr:.2e} gnorm {gnorm.item():.2f} "
                    f"{tokens_seen / el / 1e6:.2f}M tok/s epoch {packer.epoch}")
    train_s = time.time() - t_train0
    final_loss = float(sum(h["loss"] for h in loss_hist[-10:]) / max(1, len(loss_hist[-10:])))
    log(f"training done: {step} steps, {tokens_seen / 1e6:.1f}M tokens, {train_s:.0f}s, final loss {final_loss:.4f}")

    # ---- 5. save (float16)
    model.eval()
    model.half()
    model.config.use_cache = True
    model.save_pretrained(out)  # transformers 5 always writes safetensors
    st_path = os.path.join(out, "model.safetensors")
    if not os.path.isfile(st_path):
        die(f"save_pretrained did not write {st_path}: {os.listdir(out)}")
    from safetensors import safe_open

    with safe_open(st_path, framework="pt") as f:
        keys = list(f.keys())
        dtypes = {str(f.get_tensor(k).dtype) for k in keys}
    if dtypes != {"torch.float16"}:
        die(f"saved tensors are {dtypes}, expected float16")
    size_mb = os.path.getsize(st_path) / 1e6
    if size_mb > args.max_fp16_mb:
        die(f"model.safetensors is {size_mb:.1f} MB > {args.max_fp16_mb} MB")
    log(f"saved {st_path}: {len(keys)} tensors, {size_mb:.1f} MB, lm_head stored: {'lm_head.weight' in keys}")

    # ---- 6. evaluate the saved files in float32
    del model, step_fn, opt
    torch.cuda.empty_cache()
    try:
        model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32)
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    model = model.to(device).eval()
    if next(model.parameters()).dtype != torch.float32:
        die("reloaded model is not float32")
    hf_tok = AutoTokenizer.from_pretrained(out)
    rows_eval, summary = evaluate(model, hf_tok, heldout, device, args.seed)
    cm = summary["all_tokens"]["correct_lt_mismatched"]["pct"]
    pn = summary["all_tokens"]["passage_lt_no_passage"]["pct"]
    cm_af = summary["after_first_token"]["correct_lt_mismatched"]["pct"]
    pn_af = summary["after_first_token"]["passage_lt_no_passage"]["pct"]
    meets = cm >= 75 and pn >= 70

    # a greedy continuation, for the eye
    s0 = heldout[0]
    prompt = DOC_TEMPLATE.format(passage=s0["passage"]) + QUERY_TEMPLATE.format(query=s0["query"])
    ids = hf_tok(prompt, return_tensors="pt")["input_ids"].to(device)
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=hf_tok.pad_token_id,
                             eos_token_id=hf_tok.eos_token_id)
    continuation = hf_tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)

    # HF's float32 logits, ids and K/V of the first held-out prompt: kvprime's demo_model tests
    # compare against them (same committed fp16 weights, computed in float32, eager attention).
    from safetensors.torch import save_file

    model.config._attn_implementation = "eager"
    with torch.no_grad():
        ref_out = model(input_ids=ids, use_cache=True)
    ref = {"input_ids": ids[0].cpu().contiguous(), "logits": ref_out.logits[0].float().cpu().contiguous()}
    for li, layer in enumerate(ref_out.past_key_values.layers):
        ref[f"k/{li}"] = layer.keys[0].float().cpu().contiguous()
        ref[f"v/{li}"] = layer.values[0].float().cpu().contiguous()
    save_file(ref, os.path.join(out, "reference.safetensors"),
              metadata={"prompt": prompt, "transformers": transformers.__version__, "torch": torch.__version__,
                        "dtype": "float32", "device": str(device)})

    eval_json = {
        "dataset": args.dataset, "n_heldout": len(heldout), "model_dtype": "float32",
        "prompt": {"document_template": DOC_TEMPLATE, "query_template": QUERY_TEMPLATE,
                   "no_passage_template": NO_PASSAGE_TEMPLATE, "answer": "' ' + answer, tokenized on its own "
                   "(no special tokens) and appended to the prompt ids (BOS + prompt)"},
        "mismatched": "answer of another held-out sample (different text), seeded choice",
        "summary": summary,
        "targets": {"correct_lt_mismatched_pct": 75, "passage_lt_no_passage_pct": 70,
                    "metric": "all_tokens", "met": meets},
        "greedy_example": {"id": s0["id"], "query": s0["query"], "answer": s0["answer"], "generated": continuation},
        "per_sample": rows_eval,
    }
    with open(os.path.join(out, "eval.json"), "w", encoding="utf-8") as f:
        json.dump(json_safe(eval_json), f, indent=2, allow_nan=False)

    training_log = {
        "script": "tools/train_demo_model.py", "args": vars(args), "seed": args.seed,
        "steps": step, "tokens_seen": tokens_seen, "train_seconds": round(train_s, 1),
        "total_seconds_before_eval": round(time.time() - T_SCRIPT0, 1),
        "final_train_loss": round(final_loss, 4), "loss_history": loss_hist,
        "epochs_of_qa": packer.epoch, "qa_tokens_seen_packed": packer.qa_tokens,
        "prose_tokens_seen_packed": packer.prose_tokens,
        "data": {"prose_paragraphs": len(prose), "prose_tokens": n_prose_tok, "qa_samples": len(qa),
                 "demo_train_samples": len(demo_train), "demo_upsample": args.demo_upsample,
                 "qa_tokens_per_epoch": n_qa_tok, "heldout_samples_excluded": len(heldout)},
        "model": {"parameters": n_params, "safetensors_mb": round(size_mb, 2), "config": config.to_dict()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0)},
        "deterministic_note": "seeded; with --minutes the step count depends on wall time, use --steps to "
                              "fix it",
    }
    manifest = os.path.join(args.corpus, "MANIFEST.json")
    if os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as f:
            training_log["corpus_manifest"] = json.load(f)
    with open(os.path.join(out, "training_log.json"), "w", encoding="utf-8") as f:
        json.dump(training_log, f, indent=2, default=str)

    print("\n==== demo model summary ====")
    print(f"params {n_params / 1e6:.2f}M | model.safetensors {size_mb:.1f} MB fp16 | steps {step} | "
          f"tokens {tokens_seen / 1e6:.0f}M | train {train_s:.0f}s | final loss {final_loss:.3f}")
    print(f"held-out n={len(heldout)}: correct<mismatched {cm:.1f}% (after-first {cm_af if cm_af is None else round(cm_af, 1)}) | "
          f"passage<no-passage {pn:.1f}% (after-first {pn_af if pn_af is None else round(pn_af, 1)})")
    print(f"example: Q {s0['query']!r} gold {s0['answer']!r} -> {continuation!r}")
    print(f"targets (>=75%, >=70%): {'MET' if meets else 'NOT MET'} | total wall {time.time() - T_SCRIPT0:.0f}s")


if __name__ == "__main__":
    main()
