"""kvprime: transformer KV caches built, operated on and scored in C++ (LibTorch), from Python.

The seed's API (lib/kv_cache.py) with the same names and arguments, on the C++ engine:

    import kvprime, torch
    model = kvprime.Model.load("models/demo")              # config.json + safetensors
    tokenizer = kvprime.Tokenizer.from_checkpoint("models/demo")
    config = kvprime.ExperimentConfig(num_samples=10, seed=42)
    ctx_len, cache = kvprime.build_kv_cache("Document:\\n...", model, tokenizer, config)
    nll = kvprime.score_answer_with_cache(cache, ctx_len, config.query_template.format(query=q),
                                          answer, model, tokenizer, config)
    cache.key(0)      # torch.Tensor [1, n_head_kv, S, head_dim], the C++ cache's own memory

Differences from the seed, on purpose: a cache is a kvprime.KVCache (not a transformers
DynamicCache) that knows its positions, token ids and model, and operations refuse caches of
another model; correct_rope_positions[_with_bos] and apply_rope_roundtrip_noise change the cache in
place (as the seed's did) and return it; every other operation returns a new cache.
"""

# torch first: the extension links the libtorch that this torch module loads, and its tensor
# conversion needs torch's Python types registered.
import torch as _torch  # noqa: F401

from ._kvprime import *  # noqa: F401,F403
from ._kvprime import (  # noqa: F401  (names used below)
    Error, KVCache, Model, Tokenizer, build_rope_correction, get_rope_theta, rotate_half,
    __version__,
)


# ---- the seed's private helpers, under their names (the seed's tests call them) ------------------

def _rotate_half(x):
    """rotate_half([a, b]) = [-b, a] over the last dimension."""
    return rotate_half(x)


def _build_rope_correction(offset, head_dim, theta):
    """(cos, sin) [head_dim] float32 that rotate a key back by `offset` positions."""
    return build_rope_correction(offset, head_dim, theta)


def _get_rope_theta(model):
    """RoPE theta of the model's config.json (the seed passed model.config; a Model works here)."""
    return get_rope_theta(model)


def _ensure_dynamic_cache(cache):
    """The seed converted legacy tuples to a DynamicCache; a KVCache needs nothing."""
    if not isinstance(cache, KVCache):
        raise TypeError(f"expected a kvprime.KVCache, got {type(cache).__name__}")
    return cache


def _get_cache_keys(cache, layer):
    return cache.key(layer)


def _get_cache_values(cache, layer):
    return cache.value(layer)


def _set_cache_keys(cache, layer, keys):
    cache.set_key(layer, keys)


def _set_cache_values(cache, layer, values):
    cache.set_value(layer, values)


# ---- a transformers-style call on the tokenizer (the seed's tests use it) ------------------------

def _tokenizer_call(self, text, return_tensors=None, add_special_tokens=True):
    """tokenizer(text, return_tensors='pt') -> {'input_ids': LongTensor [1, T]} as in transformers;
    without return_tensors, {'input_ids': list of ids}."""
    ids = self.encode(text, add_special_tokens=add_special_tokens)
    if return_tensors is None:
        return {"input_ids": ids}
    if return_tensors != "pt":
        raise ValueError(f"return_tensors={return_tensors!r}: only 'pt' (torch) is supported")
    return {"input_ids": _torch.tensor([ids], dtype=_torch.long)}


Tokenizer.__call__ = _tokenizer_call
