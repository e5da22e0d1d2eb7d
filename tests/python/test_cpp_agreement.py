"""Python and C++ give the same numbers: the same experiment run through kvprime.run_experiment and
through the `kvprime run` command stores identical rows, and a cache built in Python equals the
one `kvprime cache build` writes. Both front ends call the same library on the same machine, with
the same shapes, so equality is exact (no tolerance)."""

import os
import subprocess

import pytest
import torch

import kvprime

from conftest import DEMO, PASSAGE, SOURCE_DIR

CLI = os.environ.get("KVPRIME_CLI", str(SOURCE_DIR / "build" / "kvprime"))

EXPERIMENT = """
[experiment]
name = "agreement"
model = "{model}"
dataset = "{dataset}"
samples = 5
batch = 4
out = "{out}"

[templates]
answer = " {{answer}}"

[[condition]]
name = "bare"

[[condition]]
name = "oracle"
prefix = "oracle"

[[condition]]
name = "surrogate_uncorrected"
prefix = "surrogate"
correct_rope = false

[[condition]]
name = "values_only"
prefix = "surrogate"
keys = "bare"

[[condition]]
name = "full_context"
prefix = "surrogate"
context = "full"
"""


def write_experiment(tmp_path, out_name):
    path = tmp_path / f"{out_name}.toml"
    path.write_text(EXPERIMENT.format(model=DEMO, dataset=SOURCE_DIR / "data" / "demo" / "qa.jsonl",
                                      out=tmp_path / out_name))
    return path


def row_key(r):
    return (r["sample_id"], r["condition"], r["candidate"])


def test_run_experiment_equals_the_cli(tmp_path):
    py_toml = write_experiment(tmp_path, "py")
    spec = kvprime.load_experiment(str(py_toml))
    assert [c.name for c in spec.conditions] == ["bare", "oracle", "surrogate_uncorrected",
                                                 "values_only", "full_context"]
    summary = kvprime.run_experiment(spec)
    # Every (sample, condition), but samples whose answer has < 2 tokens (nothing to score).
    assert summary["samples"] + summary["skipped_samples"] == 5 and summary["samples"] >= 3
    expected = 5 * summary["samples"]
    assert summary["rows_computed"] == expected and not summary["interrupted"]
    # Resumable from Python too: a second call computes nothing.
    assert kvprime.run_experiment(spec)["rows_computed"] == 0

    cli_toml = write_experiment(tmp_path, "cli")
    subprocess.run([CLI, "run", str(cli_toml), "--quiet"], check=True, capture_output=True)

    py_rows = {row_key(r): r for r in kvprime.read_results(str(tmp_path / "py" / "results.sqlite"))}
    cli_rows = {row_key(r): r for r in kvprime.read_results(str(tmp_path / "cli" / "results.sqlite"))}
    assert len(py_rows) == expected and py_rows.keys() == cli_rows.keys()
    for k, r in py_rows.items():
        c = cli_rows[k]
        for field in ("nll", "n_scored", "token_nll", "prefix_tokens", "doc_tokens", "cache_len",
                      "prefix_text"):
            assert r[field] == c[field], (k, field, r[field], c[field])
    assert kvprime.read_failures(str(tmp_path / "py" / "results.sqlite")) == []

    report = kvprime.write_experiment_report(spec)
    assert (tmp_path / "py" / "report.md").exists()
    assert report  # the summary JSON, as a dict


@pytest.mark.parametrize("prefix, correct", [(None, True), ("how much oxygen", True),
                                             ("how much oxygen", False)])
def test_cache_build_equals_the_cli(tmp_path, model, tokenizer, prefix, correct):
    out = tmp_path / "cli.safetensors"
    cmd = [CLI, "cache", "build", "-m", str(DEMO), "--passage", PASSAGE, "-o", str(out)]
    if prefix is not None:
        cmd += ["--prefix", prefix]
    if not correct:
        cmd += ["--no-correct"]
    subprocess.run(cmd, check=True, capture_output=True)
    cli_cache, _ = kvprime.load_cache(str(out), model=model)

    config = kvprime.ExperimentConfig()
    if prefix is None:
        _, cache = kvprime.build_kv_cache(config.document_template.format(document=PASSAGE), model,
                                          tokenizer, config)
    elif correct:
        _, cache, _ = kvprime.build_truncated_cache_variable_prefix(prefix, PASSAGE, model,
                                                                    tokenizer, config)
    else:
        ids, boundary = kvprime.tokenize_joint(tokenizer, prefix + config.prefix_separator,
                                               config.document_template.format(document=PASSAGE))
        cache = kvprime.build_primed_cache(model, ids[:boundary], ids[boundary:], correct_rope=False)
    assert torch.equal(cache.token_ids, cli_cache.token_ids)
    assert torch.equal(cache.positions, cli_cache.positions)
    for li in range(cache.n_layer):
        assert torch.equal(cache.key(li), cli_cache.key(li)), li
        assert torch.equal(cache.value(li), cli_cache.value(li)), li
