"""Shared fixtures of the Python suites (label `python`): the bundled demo model (models/demo, a
Llama with 8 layers, head_dim 64, RoPE theta 10000, byte-level BPE adding BOS) in float32 on CPU,
exactly as the C++ seed suite (tests/seed/test_seed_demo.cpp) uses it.

Run through CTest (tests/CMakeLists.txt sets PYTHONPATH to <build>/python, KVPRIME_CLI and
KVPRIME_SOURCE_DIR), or by hand:
    PYTHONPATH=build/python /usr/bin/python3 -m pytest tests/python
"""

import os
import pathlib

import pytest
import torch

import kvprime

SOURCE_DIR = pathlib.Path(os.environ.get("KVPRIME_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
DEMO = SOURCE_DIR / "models" / "demo"

# The seed's fixed inputs.
PASSAGE = ("The Amazon rainforest produces approximately 20 percent of the world's oxygen. "
           "It covers over 5.5 million square kilometers and is home to roughly 10 percent "
           "of all species on Earth.")
QUERY = "how much oxygen does the amazon produce"
ANSWER = "approximately 20 percent"
WRONG_ANSWER = "purple elephants flying sideways"

# float32 tolerance between two computations of the same value whose reduction order may differ
# (different matmul shapes): relative to the reference's largest magnitude, as the C++ kF32Tol.
F32_TOL = 1e-5
EPS32 = 2.0 ** -24   # float32 unit roundoff
EPS16 = 2.0 ** -11   # float16 unit roundoff


def max_abs(a, b):
    return (a.double() - b.double()).abs().max().item()


def max_rel(a, ref):
    """max |a - ref| / max |ref|: the C++ suites' max_rel_diff."""
    scale = ref.double().abs().max().item()
    return max_abs(a, ref) / max(scale, 1e-30)


def max_pair_norm(x):
    """Largest norm of a rotation pair (x[i], x[i + d/2]): a rotation error of angle e moves an
    element by at most pair_norm * e."""
    d = x.shape[-1] // 2
    return torch.sqrt(x[..., :d].double() ** 2 + x[..., d:].double() ** 2).max().item()


@pytest.fixture(scope="session")
def model():
    return kvprime.Model.load(str(DEMO))


@pytest.fixture(scope="session")
def tokenizer():
    return kvprime.Tokenizer.from_checkpoint(str(DEMO))


@pytest.fixture(scope="session")
def config():
    c = kvprime.ExperimentConfig(num_samples=10, seed=42)
    # The demo model was trained with the answer as " " + answer (models/demo/eval.json), as in the
    # C++ seed suite; everything else is the seed's default configuration.
    c.answer_template = " {answer}"
    return c


@pytest.fixture(scope="session")
def n_layer(model):
    return model.config.num_hidden_layers


@pytest.fixture(scope="session")
def head_dim(model):
    return model.config.head_dim
