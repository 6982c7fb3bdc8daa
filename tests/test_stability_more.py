"""The stability of located sets beyond the split halves: a shorter token budget counted in the same generation,
a second pairing of the recording items, each read against chance; and the normality check read beside the t
prediction p of the control replicates.
"""

import json
import os

import numpy as np
import pytest

from tests import helpers, tiny_models
from valuejax.engine.record import Prompt, Recorder
from valuejax.errors import ValueJaxError


def _prompts(n=9):
  rng = np.random.default_rng(1)
  return [Prompt(" ".join(f"w{j}" for j in rng.integers(0, 80, size=3 + i % 4)), ["up", "down"][i % 2], f"p{i}")
          for i in range(n)]


@pytest.mark.slow  # compiles generation or scoring programs of its own: seconds each
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_budget_statistics_are_a_shorter_recording(temperature):
  """The first k generated tokens' sums of a recording of N > k tokens equal a recording of k tokens: step j's
  token is drawn with the batch key folded with j and reads only the tokens before it, so greedy or sampled,
  both generate the same first k tokens (the texts agree), and the budget's sums count exactly those."""
  model = tiny_models.tiny_model_object("llama")
  kw = dict(groups=["up", "down"], batch_size=4, hist=True, hist_bins="compact", temperature=temperature, seed=3)
  full = Recorder(model, max_new_tokens=7, budget_tokens=3, **kw).run(_prompts(), progress=False)
  short = Recorder(model, max_new_tokens=3, **kw).run(_prompts(), progress=False)
  b, s = full.budget_stats, short.gen_stats
  assert b.group_names == s.group_names and int(s.tokens.sum()) > 0
  assert (full.gen_stats.tokens >= b.tokens).all() and (full.gen_stats.tokens > b.tokens).any()
  for k in ("tokens", "items", "count", "hist"):
    np.testing.assert_array_equal(getattr(b, k), getattr(s, k))
  # The same tokens, but the two runs' caches have different numbers of slots and decode segments, so each
  # activation can differ by float32 rounding (about 2**-24 relative) and each batch's float32 sum by that
  # times the sum of |a| (or a**2); a few batches are added in float64.
  for k in ("s1", "s2"):
    np.testing.assert_allclose(getattr(b, k), getattr(s, k), rtol=1e-6, atol=1e-5)
  for pid, text in short.texts.items():
    assert full.texts[pid].startswith(text)
  # A checkpointed state keeps the budget's sums.
  from valuejax.engine.record import RecordState
  back = RecordState.from_arrays(full.to_arrays())
  assert back.budget_stats == full.budget_stats


def test_budget_refused_where_it_means_nothing():
  model = tiny_models.tiny_model_object("llama")
  for kw in (dict(max_new_tokens=4, budget_tokens=4), dict(max_new_tokens=4, budget_tokens=2, mode="teacher_forced")):
    with pytest.raises(ValueJaxError, match="budget"):
      Recorder(model, groups=["up"], **kw)


def test_compare_located_against_chance():
  from valuejax.locate.stability import chance_jaccard, compare_located
  a = helpers.neuron_set("a", {"x": [0, 1, 2, 3, 4, 5], "y": [10, 11, 12]})
  b = helpers.neuron_set("b", {"x": [3, 4, 5, 6, 7, 8], "y": [13, 14, 15]})
  st = compare_located({"s": a}, {"s": b}, factor=3.0)
  # x: {3, 4, 5} of 9 in the union = 1/3; chance of two 6-sets of 20: (36/20) / (12 - 36/20) = 1.8 / 10.2.
  x = st["s"]["x"]
  assert x["jaccard"] == pytest.approx(1 / 3) and x["chance"] == pytest.approx(1.8 / 10.2)
  assert x["chance"] == pytest.approx(chance_jaccard(6, 6, 20))
  assert x["ratio"] == pytest.approx((1 / 3) / (1.8 / 10.2))  # 1.89: under 3 x chance
  assert x["reading"] == "unstable"
  assert compare_located({"s": a}, {"s": b}, factor=1.5)["s"]["x"]["reading"] == "stable"
  assert st["s"]["y"]["jaccard"] == 0.0 and st["s"]["y"]["reading"] == "unstable"
  assert compare_located({"s": a}, {"s": a}, factor=3.0)["s"]["x"]["jaccard"] == 1.0
  with pytest.raises(ValueJaxError, match="different sets"):
    compare_located({"s": a}, {"t": b}, factor=3.0)
  with pytest.raises(ValueJaxError, match="different sets"):
    compare_located({"s": a}, {"s": helpers.neuron_set("c", {"x": [1]})}, factor=3.0)


@pytest.fixture(scope="module")
def variations_run(tiny_model, tmp_path_factory):
  """The smoke config recorded with a 3-token budget of its 6 and a second pairing (data.seed = 7), then
  located (record and locate only)."""
  wd = str(tmp_path_factory.mktemp("variations") / "w")
  args = [*helpers.smoke_args(tiny_model, wd), "--config.record.budget_tokens=3", "--config.record.pairing_seed2=7"]
  helpers.ok(helpers.launch("launch.record", *args))
  helpers.ok(helpers.launch("launch.locate", *args))
  return wd


@pytest.mark.slow
def test_the_locate_summary_reads_both_variations(variations_run):
  from valuejax.workdir import layout
  from valuejax.workdir import stability_records as sr
  wd = variations_run
  pairing = json.load(open(os.path.join(wd, sr.RECORD_PAIRING_SUMMARY)))
  assert pairing["seed"] == 7 and 0 < pairing["changed_prompts"] <= pairing["prompts"]
  budget, whole = sr.read_stats(wd, sr.RECORD_BUDGET), sr.read_stats(wd, layout.RECORD_STATS)
  assert budget.group_names == whole.group_names
  assert (budget.tokens <= np.minimum(whole.tokens, 3 * whole.items)).all()
  assert sr.read_stats(wd, sr.RECORD_PAIRING).group_names == whole.group_names
  summary = layout.read(wd, layout.LOCATE_SUMMARY)
  for key, label, value in (("budget_stability", "tokens", 3), ("pairing_stability", "seed", 7)):
    for s in summary.values():
      for g, info in s["groups"].items():
        st = info[key]
        assert st[label] == value
        if st["reading"] == "not measured":  # a group with no counted token under that variation, and said so
          assert "total 0" in st["why"] or "could not be located" in st["why"]
          continue
        assert st["reading"] in ("stable", "unstable", "empty") and 0.0 <= st["jaccard"] <= 1.0
        assert st["a"] == info["count"] and st["chance"] > 0


def test_pairing_refused_when_the_seed_pairs_nothing_else(tiny_model, tmp_path):
  """ValueExploration's persona prompts do not depend on data.seed: a second recording would repeat the first,
  and the config says so before any model loads; so does a second seed equal to the first."""
  wd = str(tmp_path / "w")
  ve = helpers.smoke_args(tiny_model, wd, "configs/valueexploration.py:smoke")
  proc = helpers.launch_in_process("launch.record", *ve, "--config.record.pairing_seed2=5")
  helpers.refused(proc, "record.pairing_seed2", "do not depend on data.seed")
  proc = helpers.launch_in_process("launch.record", *helpers.smoke_args(tiny_model, wd),
                                   "--config.record.pairing_seed2=0", "--config.data.seed=3",
                                   "--config.record.budget_tokens=6")
  helpers.refused(proc, "record.budget_tokens", "below max_new_tokens")


def test_normality_check_matches_scipy_and_reads_as_declared():
  from scipy import stats as sps
  from valuejax.evaluate.stats import normality_check, pooled_test, PooledEdit
  rng = np.random.default_rng(0)
  normal, skewed = rng.normal(size=40), rng.exponential(size=40) ** 3
  for x in (normal, skewed):
    c = normality_check(np.r_[x, np.nan])  # non-finite replicates are left out, as the t p leaves them
    w, p = sps.shapiro(x)
    assert c.n == 40 and c.w == pytest.approx(w, rel=1e-12) and c.p == pytest.approx(p, rel=1e-12)
    assert c.skew == pytest.approx(sps.skew(x, bias=False))
    assert c.excess_kurtosis == pytest.approx(sps.kurtosis(x, fisher=True, bias=False))
  assert normality_check(normal).trusted and normality_check(normal).reading == "trusted"
  bad = normality_check(skewed)
  assert not bad.trusted and bad.reading == "normality rejected: read the Monte Carlo p"
  # Fewer than 8 replicates: not rejected, and still not trusted; fewer than 3 (or all equal): no test at all.
  few = normality_check(normal[:7])
  assert few.p >= 0.05 and not few.trusted and "n < 8" in few.reading
  assert normality_check(normal[:8]).trusted == (sps.shapiro(normal[:8])[1] >= 0.05)
  for tiny in (normal[:2], np.ones(10)):
    c = normality_check(tiny)
    assert c.w is None and not c.trusted and "Monte Carlo" in c.reading
  # The pooled test stores the check of the replicates its t p reads.
  edit = PooledEdit(np.zeros(5), np.full(5, 0.3), rng.normal(size=(20, 5)) * 0.1, 1.0, "s")
  t = pooled_test([edit], n_boot=50)
  assert t.normality == normality_check(t.control_effects).to_dict() and t.normality["n"] == 20


def test_results_with_and_without_the_check_read_back():
  from valuejax.evaluate.stats import normality_check
  from valuejax.workdir.results import NormalityCheck, PooledResult
  old = {"mean": 0.1, "ci_low": 0.0, "ci_high": 0.2, "p_value": 0.05, "n_controls": 19, "t_p": 0.01}
  r = PooledResult.from_json(old)
  assert r.normality is None and r.t_p == 0.01 and "normality" not in r.extra
  check = normality_check(np.random.default_rng(1).normal(size=19)).to_dict()
  r = PooledResult.from_json({**old, "normality": {**check, "later_key": 1}})
  assert isinstance(r.normality, NormalityCheck) and r.normality.trusted == check["trusted"]
  assert r.normality.w == check["w"] and r.normality.extra == {"later_key": 1}
  back = PooledResult.from_json(r.to_json())
  assert back == r and back.to_json()["normality"]["later_key"] == 1


def test_report_prints_the_check_beside_the_t_p():
  from valuejax.report.markdown import _normality
  from valuejax.workdir.results import NormalityCheck
  assert _normality(None) == ""
  line = _normality(NormalityCheck(20, 0.9, 0.03, 1.2, 2.5, False, "normality rejected: read the Monte Carlo p"))
  assert "W = 0.900" in line and "p = 0.03" in line and "**normality rejected: read the Monte Carlo p**" in line
  assert "+1.20" in line and "+2.50" in line
