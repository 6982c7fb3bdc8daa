"""Locators on hand-computed statistics: ValueLocate contrast, VAPE/LAPE entropy, histogram quantiles,
and the errors bad statistics raise."""

import math

import numpy as np
import pytest

from valuejax.errors import ValueJaxError
from valuejax.locate import (HIST_EDGES, PRESETS, GroupNeurons, hist_quantile, lape, set_size,
                             sorted_quantile, valuelocate, valuelocate_pair, vape, vape_preset)


def layer_lists(ns, group):
  return [x.tolist() for x in ns.indices(group)]


def H(*p):
  p = np.asarray(p, np.float64)
  p = p / p.sum()
  return float(-sum(x * math.log(x) for x in p if x > 0))


# -- ValueLocate ------------------------------------------------------------------------------------

# delta = p+ - p- = [[.25, 0, -.5], [.75, 0, .25]]; flat ids 0..5 are layer-major. All values are
# exact binary fractions so `delta >= threshold` has no rounding surprises.
P_PLUS = np.array([[0.5, 0.25, 0.0], [0.75, 0.5, 0.5]])
P_MINUS = np.array([[0.25, 0.25, 0.5], [0.0, 0.5, 0.25]])


def test_valuelocate_threshold_beats_small_min_count():
  ns = valuelocate(P_PLUS, P_MINUS, threshold=0.25, min_count=1, group_names=("cons", "open"))
  assert ns.names == ("cons", "open")
  # Three neurons reach 0.25 (ids 3, 0, 5), more than min_count = 1.
  assert layer_lists(ns, "cons") == [[0], [0, 2]]
  np.testing.assert_array_equal(ns["cons"].score("delta"), [0.25, 0.75, 0.25])
  np.testing.assert_array_equal(ns["cons"].score("p"), [0.5, 0.75, 0.5])
  # Only id 2 (p- - p+ = .5) reaches the threshold on the "-" side.
  assert layer_lists(ns, "open") == [[2], []]
  np.testing.assert_array_equal(ns["open"].score("delta"), [0.5])
  np.testing.assert_array_equal(ns["open"].score("p"), [0.5])
  assert "v95" not in ns["cons"].scores
  assert ns.provenance["parameters"]["counts"] == {"cons": {"above_threshold": 3, "kept": 3},
                                                   "open": {"above_threshold": 1, "kept": 1}}


def test_valuelocate_min_count_beats_threshold_with_stable_ties():
  ns = valuelocate(P_PLUS, P_MINUS, threshold=0.25, min_count=4)
  # "+": 3 (.75), 0 (.25), 5 (.25), then the zero-delta tie between ids 1 and 4 goes to the lower id 1.
  assert layer_lists(ns, "+") == [[0, 1], [0, 2]]
  # "-": 2 (.5), 1 (0), 4 (0), then the -.25 tie between ids 0 and 5 goes to 0.
  assert layer_lists(ns, "-") == [[0, 1, 2], [1]]
  np.testing.assert_array_equal(ns["-"].score("delta"), [-0.25, 0.0, 0.5, 0.0])
  # The two sides share neurons once min_count reaches into non-positive contrasts: the published rule.
  assert len(ns["+"] & ns["-"]) == 2


def test_valuelocate_threshold_count_beats_larger_min_count():
  ns = valuelocate(P_PLUS, P_MINUS, threshold=0.0, min_count=4)
  assert len(ns["+"]) == 5  # #{delta >= 0} = 5 > 4
  assert layer_lists(ns, "+") == [[0, 1], [0, 1, 2]]


def test_valuelocate_min_count_is_capped_at_all_neurons():
  ns = valuelocate(P_PLUS, P_MINUS, threshold=0.9, min_count=2000)
  assert len(ns["+"]) == len(ns["-"]) == 6


def test_valuelocate_ranks_across_layers_without_quota():
  p_plus = np.zeros((4, 10))
  p_plus[3, :5] = 0.5  # every strong neuron sits in one layer
  ns = valuelocate(p_plus, np.zeros((4, 10)), threshold=0.1, min_count=5)
  np.testing.assert_array_equal(ns.counts_per_layer("+"), [0, 0, 0, 5])


def test_valuelocate_stores_v95_of_the_target_group():
  bins = HIST_EDGES.size + 1
  hist_plus = np.zeros((2, 3, bins), np.int64)
  hist_plus[..., 0] = 50
  hist_plus[..., 11] = 40  # (0.10, 0.11]
  hist_plus[..., 21] = 10  # (0.20, 0.21]
  hist_minus = np.zeros((2, 3, bins), np.int64)
  hist_minus[..., -1] = 7  # everything in the open top bin (2.99, inf)
  ns = valuelocate(P_PLUS, P_MINUS, threshold=0.25, min_count=1, hist_plus=hist_plus,
                   hist_minus=hist_minus)
  np.testing.assert_allclose(ns["+"].score("v95"), [0.205] * 3)
  np.testing.assert_array_equal(ns["-"].score("v95"), [2.99])
  assert ns.provenance["parameters"]["v95"]["quantile"] == 0.95


def test_valuelocate_pair_picks_groups_by_name():
  counts = np.stack([np.round(P_MINUS * 8), np.round(P_PLUS * 8), np.zeros((2, 3))]).astype(np.int64)
  ns = valuelocate_pair(counts, [8, 8, 8], ["openness", "conservation", "x"], "conservation", "openness",
                        threshold=0.25, min_count=1)
  assert ns.names == ("conservation", "openness")
  assert layer_lists(ns, "conservation") == [[0], [0, 2]]
  with pytest.raises(ValueJaxError, match="unknown group 'tradition'"):
    valuelocate_pair(counts, [8, 8, 8], ["openness", "conservation", "x"], "tradition", "openness")


# -- ValueLocate set sizes --------------------------------------------------------------------------

SMOLLM2 = 30 * 1536  # SmolLM2-135M: 46,080 MLP neurons


def _old_rule(p_plus, p_minus, threshold, min_count):
  """The rule valuelocate applied before `size` existed, written out independently of it."""
  num_layers, num_neurons = p_plus.shape
  groups = {}
  for name, own, other in (("+", p_plus, p_minus), ("-", p_minus, p_plus)):
    delta = (own - other).ravel()
    n = max(min(min_count, delta.size), int(np.count_nonzero(delta >= threshold)))
    chosen = np.array(sorted(range(delta.size), key=lambda i: (-delta[i], i))[:n], np.int64)
    groups[name] = GroupNeurons.from_flat(chosen, num_layers, num_neurons,
                                          {"delta": delta[chosen], "p": own.ravel()[chosen]})
  return groups


def test_set_size_fraction_rounds_half_up_and_keeps_at_least_one():
  assert set_size(0.005, SMOLLM2, 0, 2000) == 230  # 230.4
  assert set_size(0.0051, SMOLLM2, 0, 2000) == 235  # 235.008
  # Exactly .5 rounds up, where Python's round() would give the even neighbour.
  assert set_size(0.5, 5, 0, 2000) == 3  # 2.5; round() -> 2
  assert set_size(0.75, 6, 0, 2000) == 5  # 4.5; round() -> 4
  assert set_size(0.3125, 16, 0, 2000) == 5  # 5.0 exactly stays 5
  assert set_size(1e-7, SMOLLM2, 0, 2000) == 1  # 0.0046 -> at least one neuron
  assert set_size(0.999, 6, 0, 2000) == 6
  # The threshold count and min_count play no part in a fraction.
  assert set_size(0.005, SMOLLM2, 40000, 2000) == 230
  # Command-line config values arrive as strings; numpy scalars are numbers too.
  assert set_size("0.005", SMOLLM2, 0, 2000) == set_size(np.float64(0.005), SMOLLM2, 0, 2000) == 230


def test_set_size_paper_and_exact_counts():
  assert set_size("paper", SMOLLM2, 10, 2000) == 2000
  assert set_size("paper", SMOLLM2, 3000, 2000) == 3000
  assert set_size("paper", 6, 0, 2000) == 6  # min_count capped at all neurons
  assert set_size(200, SMOLLM2, 5000, 2000) == 200
  assert set_size(np.int64(200), SMOLLM2, 0, 0) == set_size("200", SMOLLM2, 0, 0) == 200
  assert set_size(1, SMOLLM2, 0, 0) == 1
  assert set_size(10 ** 6, SMOLLM2, 0, 0) == SMOLLM2


BAD_SIZES = [0, -3, 0.0, -0.5, 1.0, 1.5, float("nan"), float("inf"), True, False, None, "", "Paper",
             "fraction", "0", "-1", "1.0", "nan", [0.1]]


@pytest.mark.parametrize("bad", BAD_SIZES, ids=repr)
def test_invalid_sizes_name_the_accepted_forms(bad):
  with pytest.raises(ValueJaxError) as e:
    set_size(bad, SMOLLM2, 0, 2000)
  assert "`size`" in str(e.value) and '"paper"' in str(e.value) and "(0, 1)" in str(e.value)
  with pytest.raises(ValueJaxError, match="is not a size rule"):
    valuelocate(P_PLUS, P_MINUS, size=bad)
  counts = np.stack([np.round(P_PLUS * 8), np.round(P_MINUS * 8)]).astype(np.int64)
  with pytest.raises(ValueJaxError, match="is not a size rule"):
    valuelocate_pair(counts, [8, 8], ["a", "b"], "a", "b", size=bad)


@pytest.mark.parametrize("threshold, min_count", [(0.1, 2000), (0.25, 1), (0.25, 40), (0.0, 5), (0.9, 0)])
def test_size_paper_is_exactly_the_old_default(threshold, min_count):
  rng = np.random.default_rng(0)
  # Multiples of 1/8 make many exact ties in delta, so the tie-break is exercised.
  p_plus, p_minus = rng.integers(0, 9, (2, 5, 16)) / 8
  default = valuelocate(p_plus, p_minus, threshold, min_count)
  named = valuelocate(p_plus, p_minus, threshold, min_count, size="paper")
  assert default == named
  old = _old_rule(p_plus, p_minus, threshold, min_count)
  for g in ("+", "-"):
    assert named[g] == old[g]  # same neurons, same order, same scores, bit for bit
  params = named.provenance["parameters"]
  assert params["size"] == "paper" and params["size_count"] == {g: len(old[g]) for g in ("+", "-")}
  assert params["threshold"] == threshold and params["min_count"] == min_count


def test_size_keeps_the_top_n_by_delta_with_stable_ties():
  # The hand-computed pair above: "+" ranks ids 3 (.75), 0, 5 (.25), then 1, 4 (0), 2 (-.5).
  ns = valuelocate(P_PLUS, P_MINUS, threshold=0.0, min_count=2000, size=4)
  assert layer_lists(ns, "+") == [[0, 1], [0, 2]]  # the zero tie between ids 1 and 4 goes to 1
  assert layer_lists(ns, "-") == [[0, 1, 2], [1]]  # the -.25 tie between ids 0 and 5 goes to 0
  # A fraction: 0.5 * 6 = 3 neurons, though 5 neurons reach the threshold 0 and min_count is 2000.
  ns = valuelocate(P_PLUS, P_MINUS, threshold=0.0, min_count=2000, size=0.5)
  assert layer_lists(ns, "+") == [[0], [0, 2]]
  np.testing.assert_array_equal(ns["+"].score("delta"), [0.25, 0.75, 0.25])
  assert layer_lists(ns, "-") == [[1, 2], [1]]  # .5, then the zero tie 1, 4 in id order
  params = ns.provenance["parameters"]
  assert params["size"] == 0.5 and params["size_count"] == {"+": 3, "-": 3}
  assert params["counts"]["+"] == {"above_threshold": 5, "kept": 3}
  # A cut inside a tie: 2 neurons of "-" are id 2 and the lower id of the zero tie.
  assert layer_lists(valuelocate(P_PLUS, P_MINUS, size="2"), "-") == [[1, 2], []]

  rng = np.random.default_rng(1)
  p_plus, p_minus = rng.integers(0, 5, (2, 6, 40)) / 4  # heavy ties
  for size, n in ((0.1, 24), (0.0125, 3), (7, 7)):
    ns = valuelocate(p_plus, p_minus, threshold=0.0, size=size)
    for g, own, other in (("+", p_plus, p_minus), ("-", p_minus, p_plus)):
      delta = (own - other).ravel()
      want = sorted(sorted(range(delta.size), key=lambda i: (-delta[i], i))[:n])
      assert len(ns[g]) == n and ns[g].flat.tolist() == want
      np.testing.assert_array_equal(ns[g].score("delta"), delta[want])


def test_valuelocate_pair_passes_the_size_on_and_provenance_saves():
  counts = np.stack([np.round(P_MINUS * 8), np.round(P_PLUS * 8)]).astype(np.int64)
  ns = valuelocate_pair(counts, [8, 8], ["openness", "conservation"], "conservation", "openness",
                        threshold=0.25, min_count=1, size="0.5")
  assert layer_lists(ns, "conservation") == [[0], [0, 2]]
  assert ns.provenance["parameters"]["size"] == "0.5"  # recorded as given
  assert ns.provenance["parameters"]["size_count"] == {"conservation": 3, "openness": 3}
  ns.to_json_dict()  # JSON-serialisable as saved


# -- histogram quantile -----------------------------------------------------------------------------

def test_hist_quantile_interpolates_linearly_within_a_bin():
  h = np.zeros(HIST_EDGES.size + 1)
  h[0], h[11], h[21] = 50, 40, 10
  # r = 95: 90 values lie below bin 21 = (0.20, 0.21], so 5 of its 10 -> halfway.
  assert hist_quantile(h, 0.95) == pytest.approx(0.205)
  assert hist_quantile(h, 0.5) == 0.0  # the 50th value is still in (-inf, 0]
  assert hist_quantile(h, 0.7) == pytest.approx(0.105)  # 20 of bin 11's 40
  # Positive only: r = 0.95 * 50 = 47.5 -> 7.5 of bin 21's 10.
  assert hist_quantile(h, 0.95, positive_only=True) == pytest.approx(0.2075)


def test_hist_quantile_open_bins_empty_and_batched():
  bins = HIST_EDGES.size + 1
  h = np.zeros((3, bins))
  h[0, 0] = 4
  h[1, bins - 1] = 4
  out = hist_quantile(h)
  assert out.shape == (3,)
  assert out[0] == 0.0 and out[1] == 2.99 and np.isnan(out[2])


def test_hist_quantile_custom_edges_and_bad_layout():
  h = np.array([0, 2, 2, 0])  # edges [0, 1, 2]: (-inf,0], (0,1], (1,2], (2,inf)
  assert hist_quantile(h, 0.75, edges=[0.0, 1.0, 2.0]) == pytest.approx(1.5)
  assert HIST_EDGES.size + 1 == 301  # the engine's layout
  with pytest.raises(ValueJaxError, match="301"):
    hist_quantile(np.ones(302))
  with pytest.raises(ValueJaxError, match="outside"):
    hist_quantile(h, 0.0, edges=[0.0, 1.0, 2.0])


# -- VAPE / LAPE ------------------------------------------------------------------------------------

# K=2, L=2, F=3; flat ids 0..5 layer-major. With 10 tokens per group:
#   P0 = [[1, .5, 0], [.2, 0, .4]],  P1 = [[0, .1, 0], [.8, 0, .4]]
# sorted P = [0,0,0,0,0,.1,.2,.4,.4,.5,.8,1]; rate .5 -> element round(6)-1 = 5 -> tau = .1.
# Ids 2 and 4 are all-zero (0/0 -> 0, then no P > tau -> H = +inf).
# H: id0 = 0, id1 = H(5/6, 1/6) = .4506, id3 = H(.2, .8) = .5004, id5 = ln 2.
COUNTS = np.array([[[10, 5, 0], [2, 0, 4]],
                   [[0, 1, 0], [8, 0, 4]]])
TOKENS = np.array([10, 10])
ITEMS = np.array([10, 2])


def test_vape_hand_computed_entropy_and_multi_group_neuron():
  ns = vape(COUNTS, TOKENS, 0.5, 0.5, 0.5, ["support", "conflict"])
  assert ns.provenance["parameters"]["tau"] == pytest.approx(0.1)
  assert ns.provenance["parameters"]["bar"] == pytest.approx(0.1)
  # Kept (3 of 6, lowest H): ids 0, 1, 3. Bar .1: support has P > .1 at all three, conflict only at id 3.
  assert layer_lists(ns, "support") == [[0, 1], [0]]
  assert layer_lists(ns, "conflict") == [[], [0]]
  np.testing.assert_allclose(ns["support"].score("entropy"), [0.0, H(5, 1), H(0.2, 0.8)])
  np.testing.assert_allclose(ns["support"].score("p"), [1.0, 0.5, 0.2])
  np.testing.assert_allclose(ns["conflict"].score("p"), [0.8])
  assert len(ns["support"] & ns["conflict"]) == 1  # (1, 0) is above the bar in both groups


def test_vape_all_zero_neurons_are_filtered_to_inf_and_never_assigned():
  ns = vape(COUNTS, TOKENS, 0.5, 1.0, 0.5, ["a", "b"])
  assert ns.provenance["parameters"]["num_filtered"] == 2
  assert layer_lists(ns, "a") == [[0, 1], [0, 2]]
  assert layer_lists(ns, "b") == [[], [0, 2]]
  assert np.all(np.isfinite(ns["a"].score("entropy")))


def test_vape_ties_break_by_flat_id_and_neuron_joins_two_groups():
  # P0 = [0, .6, .6, .6], P1 = [.1, .6, .6, .6]; rate .25 of 8 -> element 1 -> tau = .1, so id 0 is
  # filtered; ids 1..3 tie at ln 2 and the stable sort keeps 1 and 2.
  counts = np.array([[[0, 6, 6, 6]], [[1, 6, 6, 6]]])
  ns = vape(counts, [10, 10], 0.25, 0.5, 0.25, ["a", "b"])
  assert layer_lists(ns, "a") == [[1, 2]]
  assert layer_lists(ns, "b") == [[1, 2]]
  np.testing.assert_allclose(ns["a"].score("entropy"), [math.log(2)] * 2)


def test_vape_items_denominator_changes_the_ranking():
  # Tokens: H id1 = .4506 < H id3 = .5004 -> keep {0, 1}.
  tok = vape(COUNTS, {"tokens": TOKENS, "items": ITEMS}, 0.5, 1 / 3, 0.5, ["s", "c"])
  assert layer_lists(tok, "s") == [[0, 1], []]
  assert layer_lists(tok, "c") == [[], []]  # P1 at ids 0, 1 is 0 and .1, not above bar .1
  # Items (C / Q, Q = [10, 2]): P1 = [[0, .5, 0], [4, 0, 2]]; sorted element 5 -> tau = bar = .2.
  # H id1 = ln 2, H id3 = H(.2, 4) = .1914 -> keep {0, 3}.
  items = vape(COUNTS, {"tokens": TOKENS, "items": ITEMS}, 0.5, 1 / 3, 0.5, ["s", "c"],
               denominator="items")
  assert items.provenance["parameters"]["tau"] == pytest.approx(0.2)
  assert layer_lists(items, "s") == [[0], []]
  assert layer_lists(items, "c") == [[], [0]]
  np.testing.assert_allclose(items["c"].score("entropy"), [H(0.2, 4.0)])
  np.testing.assert_allclose(items["c"].score("p"), [4.0])
  # The same array passed directly as totals gives the same set.
  assert vape(COUNTS, ITEMS, 0.5, 1 / 3, 0.5, ["s", "c"], denominator="items")["c"] == items["c"]
  # Items are fewer than positive tokens, so as a token denominator they are rejected.
  with pytest.raises(ValueJaxError, match="counts above its total"):
    vape(COUNTS, ITEMS, 0.5, 1 / 3, 0.5)


def test_vape_bar_over_kept_population_is_stricter():
  # Kept ids 0, 1, 3 -> kept P = [1, .5, .2, 0, .1, .8]; sorted element round(3)-1 = 2 -> bar = .2.
  ns = vape(COUNTS, TOKENS, 0.5, 0.5, 0.5, ["s", "c"], bar_population="kept")
  assert ns.provenance["parameters"]["bar"] == pytest.approx(0.2)
  assert layer_lists(ns, "s") == [[0, 1], []]
  assert layer_lists(ns, "c") == [[], [0]]


def test_vape_k_way_and_presets():
  rng = np.random.default_rng(0)
  k, layers, neurons = 4, 3, 200
  counts = rng.integers(0, 30, (k, layers, neurons))
  specific = rng.choice(layers * neurons, 8, replace=False)
  for i, flat in enumerate(specific):  # strongly group-specific neurons
    counts[:, flat // neurons, flat % neurons] = 0
    counts[i % k, flat // neurons, flat % neurons] = 100
  names = ["a", "b", "c", "d"]
  ns = lape(counts, np.full(k, 100), names)
  assert ns.provenance["parameters"]["preset"] == "lape"
  assert ns.provenance["parameters"]["num_kept"] == 6  # round(600 * 0.01)
  found = np.concatenate([ns[n].flat for n in names])
  assert set(found) <= set(specific.tolist()) and len(found) == 6
  for i, flat in enumerate(specific):
    if flat in found:
      assert flat in ns[names[i % k]].flat
  assert PRESETS["semantic"] == (0.5, 0.01, 0.5)
  d = vape_preset("decision", counts, np.full(k, 100), names)
  v = vape(counts, np.full(k, 100), 0.95, 0.01, 0.95, names)
  assert all(d[n] == v[n] for n in names) and d.provenance["parameters"]["preset"] == "decision"


def test_vape_float32_matches_float64_on_separated_entropies():
  a = vape(COUNTS, TOKENS, 0.5, 0.5, 0.5, ["s", "c"])
  b = vape(COUNTS, TOKENS, 0.5, 0.5, 0.5, ["s", "c"], dtype=np.float32)
  assert all(a[g].flat.tolist() == b[g].flat.tolist() for g in ("s", "c"))
  assert b.provenance["parameters"]["dtype"] == "float32"


def test_sorted_quantile_uses_round_half_to_even():
  values = np.arange(10)[::-1]
  assert sorted_quantile(values, 0.25) == 1  # round(2.5) = 2 -> element 1 (half-up would give 2)
  assert sorted_quantile(values, 0.95) == 9  # round(9.5) = 10
  assert sorted_quantile(values, 1.0) == 9
  with pytest.raises(ValueJaxError, match="selects no element"):
    sorted_quantile(values, 0.01)


# -- invalid input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), "x"])
def test_rates_outside_unit_interval_are_rejected(bad):
  for args in ((bad, 0.5, 0.5), (0.5, bad, 0.5), (0.5, 0.5, bad)):
    with pytest.raises(ValueJaxError) as e:
      vape(COUNTS, TOKENS, *args)
    assert "(0, 1]" in str(e.value) or "not a number" in str(e.value)


def test_bad_statistics_give_clear_errors():
  neg = COUNTS.copy()
  neg[0, 1, 1] = -1
  with pytest.raises(ValueJaxError, match=r"negative value -1 at \[0, 1, 1\]"):
    vape(neg, TOKENS, 0.5, 0.5, 0.5)
  with pytest.raises(ValueJaxError, match="group 1 has total 0"):
    vape(COUNTS, [10, 0], 0.5, 0.5, 0.5)
  with pytest.raises(ValueJaxError, match="2 groups, `counts` 2|has 3 groups"):
    vape(COUNTS, [10, 10, 10], 0.5, 0.5, 0.5)
  with pytest.raises(ValueJaxError, match="3 dimensions"):
    vape(COUNTS[0], TOKENS, 0.5, 0.5, 0.5)
  with pytest.raises(ValueJaxError, match="at least 2 groups"):
    vape(COUNTS[:1], TOKENS[:1], 0.5, 0.5, 0.5)
  with pytest.raises(ValueJaxError, match="non-integer"):
    vape(COUNTS + 0.5, TOKENS, 0.5, 0.5, 0.5)
  with pytest.raises(ValueJaxError, match="3 names for 2 groups"):
    vape(COUNTS, TOKENS, 0.5, 0.5, 0.5, ["a", "b", "c"])
  with pytest.raises(ValueJaxError, match="duplicates"):
    vape(COUNTS, TOKENS, 0.5, 0.5, 0.5, ["a", "a"])
  with pytest.raises(ValueJaxError, match="no 'items' entry"):
    vape(COUNTS, {"tokens": TOKENS}, 0.5, 0.5, 0.5, denominator="items")
  with pytest.raises(ValueJaxError, match="denominator"):
    vape(COUNTS, TOKENS, 0.5, 0.5, 0.5, denominator="words")
  with pytest.raises(ValueJaxError, match="keeps none"):
    vape(COUNTS, TOKENS, 0.5, 0.01, 0.5)
  with pytest.raises(ValueJaxError, match="unknown VAPE preset"):
    vape_preset("lapee", COUNTS, TOKENS)


def test_valuelocate_bad_input():
  with pytest.raises(ValueJaxError, match=r"\(2, 3\).*\(2, 4\) differ"):
    valuelocate(P_PLUS, np.zeros((2, 4)))
  with pytest.raises(ValueJaxError, match="negative"):
    valuelocate(P_PLUS, -P_MINUS)
  with pytest.raises(ValueJaxError, match="non-finite"):
    valuelocate(P_PLUS * np.nan, P_MINUS)
  with pytest.raises(ValueJaxError, match="min_count"):
    valuelocate(P_PLUS, P_MINUS, min_count=-1)
  with pytest.raises(ValueJaxError, match="threshold"):
    valuelocate(P_PLUS, P_MINUS, threshold=float("inf"))
  with pytest.raises(ValueJaxError, match="hist_plus"):
    valuelocate(P_PLUS, P_MINUS, hist_plus=np.zeros((2, 2, 301)))
  with pytest.raises(ValueJaxError, match="301"):
    valuelocate(P_PLUS, P_MINUS, hist_plus=np.zeros((2, 3, 302)))
  with pytest.raises(ValueJaxError, match="differ"):
    valuelocate_pair(np.zeros((2, 2, 3), int), [1, 1], ["a", "b"], "a", "a")
