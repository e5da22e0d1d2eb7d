"""The bindings themselves: tensors shared with C++ (no copies), errors as Python exceptions with
the C++ message, batched calls equal to single ones, cache files, and HF parity through Python."""

import json
import pathlib
import struct

import pytest
import torch

import kvprime

from conftest import DEMO, F32_TOL, PASSAGE, QUERY, SOURCE_DIR, max_rel


def read_safetensors(path):
    """A minimal safetensors reader (8-byte header length, JSON header, raw little-endian data),
    so that this suite needs no package beyond torch."""
    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "F64": torch.float64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = bytearray(raw[8 + n + b:8 + n + e])
        out[name] = torch.frombuffer(buf, dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def test_cache_tensors_are_shared_with_cpp(model, tokenizer, config):
    _, cache = kvprime.build_kv_cache(PASSAGE, model, tokenizer, config)
    k = cache.key(3)
    assert k.data_ptr() == cache.key(3).data_ptr(), "the same memory on every access"
    assert cache.keys[3].data_ptr() == k.data_ptr()
    assert not cache.nonfinite_rows().any()
    k[0, 0, 5, 0] = float("nan")          # written from Python ...
    assert cache.nonfinite_rows().tolist() == [True]  # ... seen by C++


def test_from_tensors_uses_the_given_tensors(model):
    cfg = model.config
    shape = (1, cfg.num_key_value_heads, 4, cfg.head_dim)
    keys = [torch.randn(shape) for _ in range(cfg.num_hidden_layers)]
    values = [torch.randn(shape) for _ in range(cfg.num_hidden_layers)]
    c = kvprime.KVCache.from_tensors(model, keys, values)
    assert c.key(0).data_ptr() == keys[0].data_ptr()
    assert c.positions.tolist() == [[0, 1, 2, 3]]
    assert c.token_ids.tolist() == [[-1] * 4]
    with pytest.raises(kvprime.Error, match="layer"):
        kvprime.KVCache.from_tensors(model, keys[:-1], values[:-1])
    bad = [torch.randn(1, cfg.num_key_value_heads + 1, 4, cfg.head_dim)] * cfg.num_hidden_layers
    with pytest.raises(kvprime.Error):
        kvprime.KVCache.from_tensors(model, bad, bad)


def test_errors_are_python_exceptions_naming_the_input(tmp_path, model):
    assert issubclass(kvprime.Error, ValueError)
    with pytest.raises(kvprime.Error, match="no-such-dir"):
        kvprime.Model.load(str(tmp_path / "no-such-dir"))
    with pytest.raises(kvprime.Error, match="bfloat17"):
        kvprime.Model.load(str(DEMO), dtype="bfloat17")
    with pytest.raises(kvprime.Error, match="unknown field 'num_sample'"):
        kvprime.ExperimentConfig(num_sample=3)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"passage": "p", "query": "q", "answer": "a"}\n{not json\n')
    with pytest.raises(kvprime.Error, match="bad.jsonl:2"):
        kvprime.read_dataset(str(bad))


def test_forward_through_the_cache_equals_one_forward(model, tokenizer):
    ids = torch.tensor([tokenizer.encode("Document:\n" + PASSAGE)])
    full = model.forward(ids)
    cache = model.new_cache()
    first = model.forward(ids[:, :10], cache=cache)
    rest = model.forward(ids[:, 10:], cache=cache)
    assert len(cache) == ids.shape[1]
    assert cache.positions.tolist() == [list(range(ids.shape[1]))]
    assert max_rel(torch.cat([first, rest], dim=1), full) < F32_TOL
    last = model.forward(ids, logits="last")
    assert last.shape == (1, full.shape[2])
    assert max_rel(last[0], full[0, -1]) < F32_TOL


def test_batched_scoring_equals_single(model, tokenizer, config):
    docs = [PASSAGE, "Paris is the capital of France. It lies on the Seine.",
            "Water boils at 100 degrees Celsius at sea level."]
    caches = [kvprime.prefill(model, tokenizer.encode("Document:\n" + d)) for d in docs]
    q = tokenizer.encode(config.query_template.format(query=QUERY), add_special_tokens=False)
    answers = [tokenizer.encode(" approximately 20 percent", add_special_tokens=False),
               tokenizer.encode(" the capital city", add_special_tokens=False),
               tokenizer.encode(" one hundred degrees", add_special_tokens=False)]
    batched = kvprime.score_answers(model, caches, [q] * 3, answers)
    for c, a, b in zip(caches, answers, batched):
        single = kvprime.score_answer(model, c, q, a)
        assert single.n_scored == len(a) - 1 == b.n_scored
        # Different matmul shapes (batch 3, padded): reduction order only.
        assert abs(single.nll - b.nll) < F32_TOL * abs(single.nll), (single.nll, b.nll)


def test_cache_files_roundtrip_and_refusals(tmp_path, model, tokenizer, config):
    keep, cache = kvprime.build_truncated_kv_cache_corrected("how much oxygen", PASSAGE, model,
                                                             tokenizer, config)
    path = tmp_path / "c.safetensors"
    kvprime.save_cache(str(path), cache, {"note": "python"})
    loaded, meta = kvprime.load_cache(str(path), model=model)
    assert meta == {"note": "python"}
    assert len(loaded) == keep
    for li in range(cache.n_layer):
        assert torch.equal(loaded.key(li), cache.key(li))
        assert torch.equal(loaded.value(li), cache.value(li))
    assert torch.equal(loaded.token_ids, cache.token_ids)
    # One flipped byte in the tensor data: the checksum refuses it, naming the file.
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x40
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(kvprime.Error, match="corrupt.safetensors"):
        kvprime.load_cache(str(bad))


def test_caches_of_different_models_are_refused(model, tokenizer, config):
    other = kvprime.Model.load(str(SOURCE_DIR / "tests" / "fixtures" / "parity" / "llama3"))
    _, mine = kvprime.build_kv_cache(PASSAGE, model, tokenizer, config)
    theirs = other.new_cache()
    other.forward(torch.tensor([[1, 5, 9, 12]]), cache=theirs, logits="none")
    with pytest.raises(kvprime.Error):
        kvprime.build_hybrid_cache(mine, theirs)
    with pytest.raises(kvprime.Error):
        kvprime.score_answer(other, mine, [5, 6], [7, 8])


@pytest.mark.parametrize("weights", ["nf4", "nf4-dq"])
def test_nf4_weights_load_and_stay_apart(model, tokenizer, config, weights):
    q = kvprime.Model.load(str(DEMO), weights=weights)
    assert q.fingerprint == model.fingerprint + "-" + weights
    ids = torch.tensor([tokenizer.encode("Document:\n" + PASSAGE)])
    dense, four = model.forward(ids), q.forward(ids)
    assert torch.isfinite(four).all()
    # 4-bit weights move the logits (measured: up to 0.28 of their largest; correlation 0.954),
    # but keep them correlated; bounds with margin.
    assert 0 < max_rel(four, dense) < 0.5
    assert torch.corrcoef(torch.stack([four.flatten(), dense.flatten()]))[0, 1] > 0.9
    _, mine = kvprime.build_kv_cache(PASSAGE, model, tokenizer, config)
    _, theirs = kvprime.build_kv_cache(PASSAGE, q, tokenizer, config)
    with pytest.raises(kvprime.Error):
        kvprime.build_hybrid_cache(mine, theirs)
    with pytest.raises(kvprime.Error, match="nf5"):
        kvprime.Model.load(str(DEMO), weights="nf5")


@pytest.mark.parametrize("name", ["llama3", "mistral", "qwen2", "qwen3", "gemma2", "gemma3"])
def test_forward_matches_hf_fixture(name):
    """HF transformers' float32 CPU logits and K/V (tests/fixtures/parity, made by
    tools/make_parity_fixtures.py) through the Python front end: the C++ parity suite's bound."""
    d = SOURCE_DIR / "tests" / "fixtures" / "parity" / name
    exp = read_safetensors(d / "expected.safetensors")
    m = kvprime.Model.load(str(d))
    cache = m.new_cache(exp["plain/input_ids"].shape[0])
    logits = m.forward(exp["plain/input_ids"].long(), cache=cache)
    assert max_rel(logits, exp["plain/logits"]) < F32_TOL, name
    for li in range(m.config.num_hidden_layers):
        assert max_rel(cache.key(li), exp[f"plain/k/{li}"]) < F32_TOL, (name, li)
        assert max_rel(cache.value(li), exp[f"plain/v/{li}"]) < F32_TOL, (name, li)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (runs on the GPU machine)")
def test_cuda_equals_cpu(model, tokenizer, config):
    """The same float32 model on CUDA: caches live on the GPU (shared, not copied back) and agree
    with the CPU's to float32 reduction-order rounding (TF32 is off: LibTorch's default for
    float32 matmuls), as the C++ parity suite's CUDA cases."""
    gpu = kvprime.Model.load(str(DEMO), device="cuda")
    n_gpu, c_gpu = kvprime.build_kv_cache("Document:\n" + PASSAGE, gpu, tokenizer, config)
    n_cpu, c_cpu = kvprime.build_kv_cache("Document:\n" + PASSAGE, model, tokenizer, config)
    assert n_gpu == n_cpu and c_gpu.device.startswith("cuda")
    assert c_gpu.key(0).is_cuda and c_gpu.key(0).data_ptr() == c_gpu.key(0).data_ptr()
    for li in range(c_cpu.n_layer):
        assert max_rel(c_gpu.key(li).cpu(), c_cpu.key(li)) < F32_TOL, li
        assert max_rel(c_gpu.value(li).cpu(), c_cpu.value(li)) < F32_TOL, li
    q = config.query_template.format(query=QUERY)
    nll_gpu = kvprime.score_answer_with_cache(c_gpu, n_gpu, q, "approximately 20 percent", gpu,
                                              tokenizer, config)
    nll_cpu = kvprime.score_answer_with_cache(c_cpu, n_cpu, q, "approximately 20 percent", model,
                                              tokenizer, config)
    assert abs(nll_gpu - nll_cpu) < F32_TOL * abs(nll_cpu), (nll_gpu, nll_cpu)
