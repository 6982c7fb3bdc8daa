"""ValueLocate's contrast as the authors ran it: each value against its own reversed descriptions (8 recorded
groups, 4 pairs), enhance = push X and clamp X_reversed, scored on X's dimension as P(X's action); the aspect
contrast kept under its own name (`:aspects`), and reports naming which one ran.
"""

from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest

from configs import study, valuelocate as vl_config
from valuejax.errors import ValueJaxError
from valuejax.methods import METHODS, RULES, EDITS
from valuejax.report import markdown

ASPECTS = ("openness_to_change", "conservation", "self_enhancement", "self_transcendence")
OPPOSITE = {"openness_to_change": "conservation", "conservation": "openness_to_change",
            "self_enhancement": "self_transcendence", "self_transcendence": "self_enhancement"}


@pytest.fixture(scope="module")
def method():
  return METHODS.get("valuelocate")


@pytest.fixture(scope="module")
def dataset(method):
  return method.load_dataset(vl_config.get_config())


def test_the_default_contrast_is_each_value_against_its_reversed_descriptions(method, dataset):
  for config in (vl_config.get_config(), study.get_config()):
    assert config.locate.contrast == "reversed"
    pairs = method.pairs(config, dataset)
    assert [(p.plus, p.minus) for p in pairs] == [(a, a + "_reversed") for a in ASPECTS]
    assert [p.eval_key for p in pairs] == ["openness_vs_conservation"] * 2 + [
        "self_enhancement_vs_self_transcendence"] * 2
    assert method.groups(config, dataset) == [g for a in ASPECTS for g in (a, a + "_reversed")]
  # The study records every shipped description of the 8 groups (40 each).
  groups, prompts = method.record_prompts(study.get_config(), dataset)
  counts = {g: sum(p.group == g for p in prompts) for g in groups}
  assert counts == {g: 40 for g in groups} and len(groups) == 8
  assert all(p.meta["reversed"] == p.group.endswith("_reversed") for p in prompts)


def test_the_aspect_contrast_is_a_named_variant(method, dataset):
  config = vl_config.get_config("aspects")
  assert config.locate.contrast == "aspects" and study.get_config("aspects").locate.contrast == "aspects"
  pairs = method.pairs(config, dataset)
  assert [(p.plus, p.minus) for p in pairs] == [("openness_to_change", "conservation"),
                                                ("self_enhancement", "self_transcendence")]


def test_pairs_are_checked_against_the_runs_contrast(method, dataset):
  config = vl_config.get_config()
  config.locate.pairs = ("conservation:conservation_reversed",)
  assert [p.name for p in method.pairs(config, dataset)] == ["conservation_vs_conservation_reversed"]
  for bad, words in ((("conservation:openness_to_change",), "not of the run's contrast 'reversed'"),
                     (("conservation:self_enhancement_reversed",), "not of the run's contrast"),
                     (("caution:caution_reversed",), "with X an aspect of the taxonomy"),
                     (("conservation",), "with X an aspect of the taxonomy")):
    config.locate.pairs = bad
    with pytest.raises(ValueJaxError, match=words):
      method.pairs(config, dataset)
  aspects = vl_config.get_config("aspects")
  aspects.locate.pairs = ("conservation:self_enhancement",)
  with pytest.raises(ValueJaxError, match="not the two aspects of one dimension"):
    method.pairs(aspects, dataset)
  aspects.locate.pairs = ("conservation:conservation_reversed",)
  with pytest.raises(ValueJaxError, match="contrast 'aspects'"):
    method.pairs(aspects, dataset)


def test_a_value_is_scored_as_its_own_action_against_the_opposing_aspects(method, dataset):
  config = vl_config.get_config()
  for pair in method.pairs(config, dataset):
    items = method.choice_items(config, dataset, pair)
    sources = method.eval_sources(config, dataset, pair)
    assert len(items) == len(sources) == config.intervene.eval_items
    for item, s in zip(items, sources):
      assert s.dimension == pair.eval_key
      assert item.aligned == s.actions[pair.plus] and item.opposing == s.actions[OPPOSITE[pair.plus]]


def _fake_stats(num_layers: int = 2, num_neurons: int = 40, seed: int = 0):
  """Counts of the 8 groups in which value X fires on neurons 0..9 of each layer and X_reversed on 10..19."""
  groups = [g for a in ASPECTS for g in (a, a + "_reversed")]
  rng = np.random.default_rng(seed)
  tokens = np.full(len(groups), 1000, np.int64)
  p = rng.uniform(0.2, 0.3, (len(groups), num_layers, num_neurons))
  for k, g in enumerate(groups):
    p[k, :, :10] += 0.0 if g.endswith("_reversed") else 0.5
    p[k, :, 10:20] += 0.5 if g.endswith("_reversed") else 0.0
  count = np.round(p * tokens[:, None, None]).astype(np.int64)
  return types.SimpleNamespace(count=count, tokens=tokens, items=np.full(len(groups), 10), group_names=groups,
                               hist=None, hist_edges=None, group=groups.index)


def test_located_sets_mirror_and_enhance_pushes_x_and_clamps_its_reversed(method, dataset):
  config = vl_config.get_config()
  config.locate.size = "20"  # exactly 20 neurons per side: the 10 planted per layer in both layers
  stats = _fake_stats()
  pairs = method.pairs(config, dataset)
  sets = RULES.get("valuelocate")(config, stats, pairs, {"model": "fake"})
  for pair in pairs:
    ns = sets[pair.name]
    assert set(ns.groups) == {pair.plus, pair.minus}
    assert np.array_equal(np.flatnonzero(ns.mask(pair.plus)[0]), np.arange(10))
    assert np.array_equal(np.flatnonzero(ns.mask(pair.minus)[0]), np.arange(10, 20))
    exps = EDITS.get("steering")(config, sets, pair, None)
    by_mode = {(e.params["mode"], e.params["gamma"]): e for e in exps}
    assert set(by_mode) == {(m, g) for m in ("enhance", "reverse") for g in config.intervene.gamma}
    for (mode, _), e in by_mode.items():
      pushed = np.asarray(e.edit.neurons.add) != 0
      clamped = np.isfinite(np.asarray(e.edit.neurons.clamp_max))
      target, other = (pair.plus, pair.minus) if mode == "enhance" else (pair.minus, pair.plus)
      assert np.array_equal(pushed, ns.mask(target)) and np.array_equal(clamped, ns.mask(other))
      assert e.alternative == ("greater" if mode == "enhance" else "less")
      assert e.edit.scope == "generated"


def _run_dir(tmp_path, groups, method="valuelocate", contrast=None) -> tuple[str, dict]:
  root = tmp_path / "run"
  (root / "record").mkdir(parents=True)
  (root / "record" / "summary.json").write_text(json.dumps({"groups": groups}))
  config = {"method": method, "locate": {} if contrast is None else {"contrast": contrast}}
  return str(root), config


def test_reports_name_the_contrast_from_the_recorded_groups(tmp_path):
  root, config = _run_dir(tmp_path, ["conservation", "conservation_reversed"])
  assert markdown.contrast(root, config) == "reversed"
  # A run made before the contrast was a config entry recorded the opposing aspects; its config has no key.
  root, config = _run_dir(tmp_path / "old", ["openness_to_change", "conservation"])
  assert markdown.contrast(root, config) == "aspects"
  root, config = _run_dir(tmp_path / "ve", ["civility-support", "civility-conflict"], method="valueexploration")
  assert markdown.contrast(root, config) is None
  lines = markdown._what_ran(*_run_dir(tmp_path / "new", ["self_enhancement", "self_enhancement_reversed"])[:1],
                             {"config": {"method": "valuelocate", "record": {}, "data": {}}})
  assert "- Contrast: each value against its own reversed descriptions (holds X vs rejects X; the authors' " \
         "contrast)" in lines
  assert os.path.isdir(root)
