"""NeuronSet files, masks and set algebra; analysis (per-layer counts, overlap, layer split); plots."""

import json
import math

import numpy as np
import pytest

from valuejax.errors import ValueJaxError
from valuejax.locate import (GroupNeurons, NeuronSet, counts_per_layer, jaccard, layer_split, overlap,
                             split_by_layers, valuelocate, vape)

L, F = 3, 5


def g(pairs, **scores):
  layer, index = zip(*pairs) if pairs else ((), ())
  return GroupNeurons.create(list(layer), list(index), L, F, scores)


def example():
  support = g([(2, 1), (0, 3), (1, 0)], delta=[0.3, 0.1, 0.2], p=[0.9, 0.5, 0.7],
              entropy=[math.inf, 0.5, float("nan")])
  conflict = g([(0, 3), (2, 4)], delta=[0.4, 0.25], p=[0.6, 0.8], entropy=[0.1, 0.2])
  return NeuronSet({"justice-support": support, "justice-conflict": conflict},
                   {"model": "tiny", "data": "c-voice/公正", "method": "vape",
                    "parameters": {"top_rate": 0.01, "rates": np.array([0.5, 0.95])},
                    "statistics": "/ckpt/stats_000100", "seed": np.int64(3)})


def test_group_neurons_sorted_per_layer_and_scores_follow():
  s = example()["justice-support"]
  assert s.layer.tolist() == [0, 1, 2] and s.index.tolist() == [3, 0, 1]
  np.testing.assert_array_equal(s.score("delta"), [0.1, 0.2, 0.3])
  assert [x.tolist() for x in s.per_layer()] == [[3], [0], [1]]
  assert [x.dtype for x in s.per_layer()] == [np.int64] * 3
  np.testing.assert_array_equal(s.counts_per_layer(), [1, 1, 1])


def test_mask_shape_dtype_and_score_map():
  ns = example()
  m = ns.mask("justice-conflict", L, F)
  assert m.shape == (L, F) and m.dtype == bool
  assert np.argwhere(m).tolist() == [[0, 3], [2, 4]]
  mf = ns.mask("justice-conflict", dtype=np.float32)
  assert mf.dtype == np.float32 and mf.sum() == 2.0
  sm = ns["justice-conflict"].score_map("delta")
  assert sm[2, 4] == 0.25 and sm.sum() == pytest.approx(0.65)
  with pytest.raises(ValueJaxError, match=r"located on \[3, 5\]"):
    ns.mask("justice-conflict", 4, F)
  with pytest.raises(ValueJaxError, match="unknown group 'justice'"):
    ns.mask("justice", L, F)


def test_round_trip_json_and_npz(tmp_path):
  ns = example()
  ns.save(str(tmp_path / "set.json"))
  ns.save(str(tmp_path / "set.npz"))
  a = NeuronSet.load(str(tmp_path / "set.json"))
  b = NeuronSet.load(str(tmp_path / "set.npz"))
  assert a == ns and b == ns and a == b
  assert np.isinf(a["justice-support"].score("entropy")[2])
  assert np.isnan(b["justice-support"].score("entropy")[1])
  # Strict JSON (no NaN/Infinity literals) and human-readable per-layer lists.
  d = json.loads((tmp_path / "set.json").read_text(encoding="utf-8"),
                 parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
  assert d["groups"]["justice-conflict"]["indices"] == [[3], [], [4]]
  assert d["groups"]["justice-support"]["scores"]["entropy"] == [[0.5], ["NaN"], ["Infinity"]]
  assert d["provenance"]["data"] == "c-voice/公正" and d["provenance"]["seed"] == 3
  # Equality sees a changed score, order of groups and provenance.
  assert ns != NeuronSet(dict(reversed(list(ns.groups.items()))), ns.provenance)
  assert ns != NeuronSet(ns.groups, {**ns.provenance, "model": "other"})
  changed = ns.with_groups({"justice-conflict": g([(0, 3), (2, 4)], delta=[0.4, 0.26], p=[0.6, 0.8],
                                                   entropy=[0.1, 0.2])})
  assert changed != ns


def test_locator_output_round_trips(tmp_path):
  rng = np.random.default_rng(1)
  counts = rng.integers(0, 50, (2, 4, 60))
  ns = vape(counts, [50, 50], 0.5, 0.1, 0.5, ["a", "b"], provenance={"model": "m"})
  vl = valuelocate(counts[0] / 50, counts[1] / 50, min_count=10,
                   hist_plus=rng.integers(0, 5, (4, 60, 301)))
  for s in (ns, vl):
    s.save_npz(str(tmp_path / "x.npz"))
    s.save_json(str(tmp_path / "x.json"))
    assert NeuronSet.load(str(tmp_path / "x.npz")) == s == NeuronSet.load(str(tmp_path / "x.json"))


def test_bad_files_and_sets(tmp_path):
  with pytest.raises(ValueJaxError, match="no such file"):
    NeuronSet.load(str(tmp_path / "missing.json"))
  (tmp_path / "bad.json").write_text('{"format": "other"}')
  with pytest.raises(ValueJaxError, match="format is 'other'"):
    NeuronSet.load(str(tmp_path / "bad.json"))
  with pytest.raises(ValueJaxError, match=".json or .npz"):
    example().save(str(tmp_path / "set.pt"))
  with pytest.raises(ValueJaxError, match="listed twice"):
    g([(0, 1), (0, 1)])
  with pytest.raises(ValueJaxError, match="outside"):
    g([(3, 0)])
  with pytest.raises(ValueJaxError, match="different model shapes"):
    NeuronSet({"a": g([(0, 1)]), "b": GroupNeurons.create([0], [1], L, F + 1)})
  with pytest.raises(ValueJaxError, match="JSON-serialisable"):
    NeuronSet({"a": g([(0, 1)])}, {"f": object()}).save_json(str(tmp_path / "x.json"))


def test_set_algebra_within_a_set_keeps_left_scores():
  ns = example()
  s, c = ns["justice-support"], ns["justice-conflict"]
  unique = s - c
  assert [x.tolist() for x in unique.per_layer()] == [[], [0], [1]]
  np.testing.assert_array_equal(unique.score("delta"), [0.2, 0.3])
  shared = s & c
  assert shared.flat.tolist() == [3]
  assert shared.score("delta").tolist() == [0.1]  # the left operand's score
  assert (c & s).score("delta").tolist() == [0.4]
  both = s | c
  assert both.flat.tolist() == [3, 5, 11, 14]
  np.testing.assert_array_equal(both.score("delta"), [0.1, 0.2, 0.3, 0.25])  # (2, 4) only in c
  extra = g([(1, 1)], v95=[2.5])
  u = c | extra
  assert list(u.scores) == ["delta", "p", "entropy", "v95"]
  assert np.isnan(u.score("v95")[0]) and u.score("v95")[1] == 2.5 and np.isnan(u.score("delta")[1])
  assert len(s - s) == 0 and len(s | g([])) == len(s)
  new = ns.with_groups({"justice-unique-support": unique}, note="support minus conflict")
  assert new.names[-1] == "justice-unique-support" and new.provenance["note"] == "support minus conflict"


def test_set_algebra_across_sets():
  en = example()
  zh = NeuronSet({"justice-support": g([(2, 1), (1, 3)], delta=[0.5, 0.5]),
                  "other": g([(0, 0)])}, {"data": "zh"})
  inter = en & zh
  assert inter.names == ("justice-support",)
  assert inter["justice-support"].flat.tolist() == [11]
  assert inter["justice-support"].score("delta").tolist() == [0.3]
  assert inter.provenance["method"] == "intersection" and inter.provenance["right"] == {"data": "zh"}
  assert (en | zh)["justice-support"].flat.tolist() == [3, 5, 8, 11]
  assert (en - zh)["justice-support"].flat.tolist() == [3, 5]
  with pytest.raises(ValueJaxError, match="no group name in common"):
    en & NeuronSet({"x": g([(0, 0)])})
  with pytest.raises(ValueJaxError, match="located on"):
    en["justice-support"] & GroupNeurons.create([0], [0], L + 1, F)


def test_from_mask_per_layer_and_random_like():
  m = np.zeros((L, F), bool)
  m[0, 2] = m[2, 0] = m[2, 4] = True
  a = GroupNeurons.from_mask(m, {"p": np.arange(L * F).reshape(L, F)})
  b = GroupNeurons.from_per_layer([[2], [], [0, 4]], F, {"p": [[2.0], [], [10.0, 14.0]]})
  assert a == b
  np.testing.assert_array_equal(a.mask(), m)
  r1, r2 = a.random_like(7), a.random_like(7)
  assert r1 == r2 and r1.counts_per_layer().tolist() == [1, 0, 2]
  draws = {tuple(a.random_like(s).flat) for s in range(20)}
  assert len(draws) > 5


def test_counts_and_overlap():
  ns = example()
  assert {k: v.tolist() for k, v in counts_per_layer(ns).items()} == {
      "justice-support": [1, 1, 1], "justice-conflict": [1, 0, 1]}
  assert jaccard(ns["justice-support"], ns["justice-conflict"]) == pytest.approx(1 / 4)
  assert math.isnan(jaccard(g([]), g([])))
  ov = overlap(ns)
  assert ov.rows == ov.cols == ns.names
  np.testing.assert_allclose(ov.jaccard, [[1, 0.25], [0.25, 1]])
  np.testing.assert_array_equal(ov.shared, [[3, 1], [1, 2]])
  other = NeuronSet({"x": g([(1, 0)]), "y": g([(0, 0)]), "z": g([(2, 4), (2, 1)])})
  ov2 = overlap(ns, other)
  assert ov2.jaccard.shape == (2, 3)
  np.testing.assert_allclose(ov2.jaccard[0], [1 / 3, 0, 1 / 4])


def test_layer_split_paper_default_and_scaling():
  s = layer_split(32)
  assert s.decision.tolist() == [0, 1, 2, 3, 4, 27, 28, 29, 30, 31]
  assert s.semantic.tolist() == list(range(5, 27))
  assert len(layer_split(16).decision) == 6  # 5 * 16 / 32 = 2.5 -> 3 at each end
  assert layer_split(28).semantic.tolist() == list(range(4, 24))
  assert layer_split(42).semantic.tolist() == list(range(7, 35))
  assert layer_split(3).semantic.tolist() == [1]
  custom = layer_split(10, first=2, last=0)
  assert custom.decision.tolist() == [0, 1] and custom.semantic.tolist() == list(range(2, 10))
  with pytest.raises(ValueJaxError, match="no semantic layer"):
    layer_split(8, first=4, last=4)
  with pytest.raises(ValueJaxError, match="at least 3 layers"):
    layer_split(2)


def test_split_by_layers_restricts_neurons():
  ns = example()
  parts = split_by_layers(ns, layer_split(3))
  assert parts["decision"]["justice-support"].layer.tolist() == [0, 2]
  assert parts["semantic"]["justice-support"].layer.tolist() == [1]
  assert len(parts["semantic"]["justice-conflict"]) == 0
  assert parts["semantic"].provenance["layer_ids"] == [1]


def test_plots_write_png_files(tmp_path):
  from valuejax.locate import plot_counts_per_layer, plot_overlap, plot_score_distribution
  ns = example()
  paths = [plot_counts_per_layer(ns, str(tmp_path)),
           plot_score_distribution(ns, "entropy", str(tmp_path)),
           plot_overlap(overlap(ns), str(tmp_path / "sub"), "ov.png")]
  for p in paths:
    data = open(p, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
  assert sorted(x.name for x in tmp_path.iterdir()) == ["entropy_distribution.png",
                                                       "neurons_per_layer.png", "sub"]
  with pytest.raises(ValueJaxError, match="no group has finite values"):
    plot_score_distribution(ns, "v95", str(tmp_path))
