"""The benchmarks run end to end, peer and valuejax side by side, and report what they measure.

They run here on the session's tiny chat llama: the scripts' every step (loading through the registry's path
reader, the HF peer with its hooks, each timed row, the memory rounds, the JSON) is the same for any model,
and the tiny one compiles in seconds where the real default model's programs take two minutes. Their numbers
on the real model are `make bench`'s, in docs/performance.md."""

import importlib.util
import json
import pathlib

import pytest

pytestmark = pytest.mark.slow


def _benchmark(name: str):
  path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
  spec = importlib.util.spec_from_file_location(name, path)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  return bench


def test_engine_benchmark_reports_every_row(tmp_path, tiny_model):
  bench = _benchmark("bench_engine")
  out = tmp_path / "bench.json"
  assert bench.main(["--model", tiny_model, "--batches", "4", "--new", "3", "--repeats", "1", "--tf-batch", "2",
                     "--tf-len", "16", "--rss-prompts", "2", "--json", str(out)]) == 0
  res = json.loads(out.read_text())
  cases = [r["case"] for r in res["rows"]]
  assert cases[0].startswith("generate + statistics, batch 4, 3 new") and cases[2].startswith("teacher-forced")
  assert len(cases) == 5
  for r in res["rows"][:3]:
    assert r["peer_tok_s"] > 0 and r["valuejax_tok_s"] > 0 and r["ratio"] == pytest.approx(
        r["valuejax_tok_s"] / r["peer_tok_s"])
  gen = res["rows"][0]
  assert gen["floor_tok_s"] > 0 and gen["ceiling_tok_s"] > 0 and gen["prompt_pass_s"] > 0
  assert [n for n, _ in res["rss_mib"]] == [2, 4, 8] and res["peak_rss_mib"] > 0


def test_scoring_benchmark_times_both_sides_on_the_same_scores(tmp_path, tiny_model):
  bench = _benchmark("bench_scoring")
  out = tmp_path / "scoring.json"
  assert bench.main(["--model", tiny_model, "--items", "2", "--edits", "3", "--repeats", "1", "--batch", "4",
                     "--json", str(out)]) == 0
  res = json.loads(out.read_text())
  assert res["items"] == 2 and res["edits"] == 3 and res["scope"] == "all"
  assert res["peer_s_per_edit"] > 0 and res["valuejax_s_per_edit"] > 0
  assert res["ratio"] == pytest.approx(res["peer_s_per_edit"] / res["valuejax_s_per_edit"])
  # the hooks and valuejax score the same edits: P(aligned) = sigmoid(difference of two means of float32
  # log-probabilities), each good to ~1e-5, and the sigmoid's slope is at most 1/4
  assert res["max_abs_diff"] < 1e-4
