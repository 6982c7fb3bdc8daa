"""The report's headline: per-edit verdicts and the family-wise correction across the tested edits; old and new
metrics.json layouts render alike; a metric's own section comes from its hook."""

import dataclasses

from valuejax.metrics import Metric
from valuejax.report.markdown import _headline
from valuejax.workdir.results import (EffectRecord, InterveneResults, PooledResult, PrimaryEdit, PrimaryResult,
                                      UnitResult)


def _effect(pair, p, mean, lo, hi, controls):
  return EffectRecord(pair, "reverse gamma=2", "less", mean=mean, ci_low=lo, ci_high=hi, p_value=p, alpha=0.05,
                      control_effects=controls)


def _results(*units, primary=None, n_controls=19, metric=""):
  """Results of units given as (name, effects, not computable)."""
  return InterveneResults("valuelocate", metric, [UnitResult(u, effects=e, not_computable=nc) for u, e, nc in units],
                          n_controls=n_controls, primary=primary)


def test_headline_reports_holm_correction():
  controls = [0.01 * i for i in range(19)]
  metrics = _results(("a", [_effect("a", 0.05, -0.04, -0.06, -0.01, controls)], []),
                     ("b", [_effect("b", 0.6, -0.001, -0.02, 0.02, controls)], []), metric="p_aligned")
  text = "\n".join(_headline(metrics))
  assert "**causal**" in text and "**no effect**" in text
  assert "Correcting for 2 tests (Holm): 0 of the 1 causal findings keep p <= 0.05" in text
  assert "adjusted p = 0.1" in text
  assert "No effect survives correction for 2 tests" in text


def test_headline_counts_findings_that_survive_correction():
  controls = [0.01 * i for i in range(19)]
  metrics = _results(("a", [_effect("a", 0.01, -0.04, -0.06, -0.01, controls)], []),
                     ("b", [_effect("b", 0.6, -0.001, -0.02, 0.02, controls)], []))
  text = "\n".join(_headline(metrics))
  assert "**1 of 2 edits tested against random controls move value orientation" in text
  assert "(after correcting for the number of tests)" in text


def test_headline_without_correction_for_a_single_test():
  metrics = _results(("a", [_effect("a", 0.05, -0.04, -0.06, -0.01, [0.0] * 19)], []))
  text = "\n".join(_headline(metrics))
  assert "**causal**" in text and "Holm" not in text


def test_not_computable_edits_are_listed():
  nc = EffectRecord("harmony", "support x5", "greater", computable=False, n=1,
                    describe="support x5: not computable, 1 item(s) parsed under both the baseline and the edit "
                             "(2 dropped)")
  only = "\n".join(_headline(_results(("harmony", [], [nc]))))
  assert "No measurement" in only and "**not computable** - support x5: not computable, 1 item(s)" in only
  controls = [0.0] * 19
  mixed = "\n".join(_headline(_results(("a", [_effect("a", 0.5, 0.0, -0.1, 0.1, controls)], [nc]))))
  assert "**no effect**" in mixed and "**not computable**" in mixed


def _pooled(mean, lo, hi, p, controls):
  return PrimaryResult("pooled", "one pooled test: ...", 0.05, ["a, e1", "b, e2"], pooled=PooledResult(
      mean, lo, hi, p, n_edits=2, n_controls=len(controls), control_effects=controls, alpha=0.05,
      significant=p <= 0.05 and lo > 0))


def test_headline_leads_with_the_declared_primary_test():
  controls = [0.01 * i for i in range(19)]
  effects = [_effect("a", 0.01, -0.04, -0.06, -0.01, controls)]
  for primary, head in ((_pooled(0.3, 0.2, 0.4, 0.05, controls), "**Causal:"),
                        (_pooled(0.05, 0.01, 0.09, 0.4, controls), "**Not specific:"),
                        (_pooled(-0.05, -0.09, -0.01, 1.0, controls), "**Opposite:"),
                        (_pooled(0.0, -0.05, 0.05, 0.5, controls), "**No effect:")):
    text = "\n".join(_headline(_results(("a", effects, []), primary=primary)))
    assert text.index("**Primary test**") < text.index(head) < text.index("exploratory")
    assert "Holm" not in text  # one declared test: nothing to correct; the per-edit list is exploratory
  each = PrimaryResult("each", "one test per located edit, Holm-corrected", 0.05, ["a, e1"],
                       each=[PrimaryEdit("a, e1", -0.04, -0.06, -0.01, 0.01, 0.02, True)])
  text = "\n".join(_headline(_results(("a", effects, []), primary=each)))
  assert "**1 of 1 primary edits" in text and "Holm-adjusted p = 0.02: **significant**" in text


def test_positive_control_section_says_whether_the_run_could_see_an_effect(tmp_path):
  import dataclasses
  import json
  import os
  from valuejax.report.markdown import _positive_control
  sub = tmp_path / "positive_control"
  os.makedirs(sub / "intervene")
  (sub / "config.json").write_text(json.dumps({"config": {"model": "m", "data": {"langs": ["zh", "en"]}}}))
  controls = [0.01 * i for i in range(19)]
  effect = EffectRecord("zh", "deactivate zh-only neurons", "greater", mean=7.0, ci_low=6.5, ci_high=7.5,
                        p_value=0.05, alpha=0.05, control_effects=controls, n=8, n_neurons=222,
                        components={"target_nll": 7.03, "other_nll": 0.03})
  write = lambda e: (sub / "intervene" / "metrics.json").write_text(json.dumps(InterveneResults(
      "languages", "language_nll", [UnitResult("zh", effects=[e])]).to_json()))
  write(effect)
  text = "\n".join(_positive_control(str(tmp_path), {"positive_control": "languages.py:demo"}))
  assert "changed the target language's loss by +7.03 and the other's by +0.03" in text
  assert "p = 0.05, the smallest possible with 19 controls. **causal**" in text and "\nYes:" in text
  write(dataclasses.replace(effect, mean=0.1, ci_low=-0.1, ci_high=0.3, p_value=0.4))
  assert "**No: the positive control did not" in "\n".join(_positive_control(str(tmp_path), {"positive_control": "x"}))
  assert _positive_control(str(tmp_path), {"positive_control": ""}) == []


def _old_metrics():
  """metrics.json as the intervene stage wrote it before the schema: units under "pairs", each edit's parameters
  spread among its keys, a pooled primary result, no schema_version."""
  ctrl = [0.01 * i for i in range(19)]
  effect = {"pair": "a_vs_b", "edit": "enhance gamma=2", "mode": "enhance", "gamma": 2.0, "expected": "greater",
            "n_neurons": 12, "n_dropped": 0, "control_n_dropped": [0] * 19, "scores": [0.6, 0.7],
            "control_scores": [[0.5, 0.5]] * 19, "controls_planned": 19, "controls_scored": 19, "name": "enhance",
            "mean": 0.3, "ci_low": 0.2, "ci_high": 0.4, "n": 2, "level": 0.95, "p_value": 0.05, "n_controls": 19,
            "alternative": "greater", "alpha": 0.05, "control_mean": 0.09, "significant": True, "computable": True,
            "control_effects": ctrl, "control_sd": 0.05, "controls_not_computable": 0, "describe": "enhance: +0.3"}
  nc = {"pair": "a_vs_b", "edit": "reverse gamma=2", "mode": "reverse", "gamma": 2.0, "expected": "less",
        "n_neurons": 12, "scores": [None, 0.4], "control_scores": [], "computable": False, "n": 1,
        "describe": "reverse gamma=2: not computable, 1 item(s) parsed under both the baseline and the edit"}
  pooled = {"mean": 0.3, "ci_low": 0.2, "ci_high": 0.4, "p_value": 0.05, "n_edits": 1, "n_controls": 19,
            "control_effects": ctrl, "level": 0.95, "alpha": 0.05, "significant": True}
  return {"method": "valuelocate", "metric": "forced_choice", "metric_description": "P(aligned action)",
          "effect_of": "value orientation", "alpha": 0.05, "n_controls": 19,
          "primary": {"test": "pooled", "declared": "one pooled test", "alpha": 0.05,
                      "edits": ["a_vs_b, enhance gamma=2"], "result": pooled}, "grid": None,
          "pairs": [{"pair": "a_vs_b", "item_ids": ["i1", "i2"], "baseline": [0.5, 0.5], "baseline_mean": 0.5,
                     "baseline_parsed": 2, "effects": [effect], "not_computable": [nc], "evaluations": 42}]}


def _sections(text):
  """report.md split at its level-2 headings: {heading: body}."""
  import re
  return dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S))


def test_an_old_metrics_file_renders_the_report_the_new_layout_renders(tmp_path):
  import json
  import os
  from valuejax.report.markdown import write_report
  from valuejax.workdir import read_intervene
  reports = {}
  for name in ("old", "new"):
    root = tmp_path / name
    os.makedirs(root / "intervene")
    (root / "config.json").write_text(json.dumps({"config": {"method": "valuelocate", "model": "m"}}))
    old = _old_metrics()
    if name == "new":
      old = InterveneResults.from_json(old).to_json()
      assert old["schema_version"] == 2 and old["units"][0]["effects"][0]["params"] == {"mode": "enhance",
                                                                                        "gamma": 2.0}
    (root / "intervene" / "metrics.json").write_text(json.dumps(old))
    reports[name] = open(write_report(str(root)), encoding="utf-8").read()
  assert read_intervene(str(tmp_path / "old")) == read_intervene(str(tmp_path / "new"))
  old, new = _sections(reports["old"]), _sections(reports["new"])
  assert list(old) == list(new) and "Result" in new and "Effect of each edit" in new
  for heading in new:
    assert old[heading] == new[heading], heading
  assert "**Causal: the located neurons move value orientation as predicted" in new["Result"]
  assert "a_vs_b: **not computable** - reverse gamma=2: not computable" in new["Result"]
  assert new["Result"].count("Metric: P(aligned action).") == 1


class HookMetric(Metric):
  """A user's metric with its own report section (named by module path, as users write it)."""
  name = "hooked"

  def report_section(self, results, root):
    return ["## Hooked metric", "", f"{len(results.effects())} effect(s) seen by the hook.", ""]


def test_a_metrics_own_section_comes_from_its_hook(tmp_path):
  import json
  import os
  from valuejax.report.markdown import write_report
  os.makedirs(tmp_path / "intervene")
  (tmp_path / "config.json").write_text(json.dumps({"config": {"method": "valuelocate", "model": "m"}}))
  results = InterveneResults.from_json({**_old_metrics(), "metric": "tests.test_report:HookMetric"}).to_json()
  (tmp_path / "intervene" / "metrics.json").write_text(json.dumps(results))
  text = open(write_report(str(tmp_path)), encoding="utf-8").read()
  assert "## Hooked metric\n\n1 effect(s) seen by the hook." in text
  assert text.index("## Effect of each edit") < text.index("## Hooked metric")
  # pvq's profiles are its own hook's: the generic report has no profile section of its own
  from valuejax.metrics import METRICS
  from valuejax.report import markdown
  assert not hasattr(markdown, "_profiles") and METRICS.get("pvq").report_section is not \
      METRICS.get("forced_choice").report_section
  unit = dataclasses.replace(InterveneResults.from_json(results).units[0], detail={"profile": {"a": 0.2, "b": -0.2}})
  unit = dataclasses.replace(unit, effects=[dataclasses.replace(unit.effects[0], detail={"profile": {"a": 0.3,
                                                                                                    "b": -0.3}})])
  pvq = METRICS.get("pvq")().report_section(InterveneResults("valuelocate", "pvq", [unit]), str(tmp_path))
  assert pvq[0] == "## Value profiles" and os.path.isfile(tmp_path / "report" / "profile_a_vs_b.png")
  assert METRICS.get("forced_choice")().report_section(InterveneResults("valuelocate", "forced_choice", [unit]),
                                                       str(tmp_path)) == []


def test_primary_prints_mirror_rho_and_the_controls_table_after_a_round_trip():
  import json
  import numpy as np
  from configs import common
  from valuejax.methods.design import primary
  from valuejax.report.markdown import _controls
  rng = np.random.default_rng(0)
  config = common.base_config("valuelocate")
  config.intervene.update({"primary_test": "pooled", "sequential_h": 0})
  summary = {"quantiles": [0.1, 0.25, 0.5, 0.75, 0.9], "located": [0.02, 0.05, 0.1, 0.2, 0.4],
             "control": [0.01, 0.04, 0.09, 0.21, 0.38]}
  activity = {"controls": "mirrored", "match": "p", "fallbacks": 3, "p": summary, "mean": summary,
              "silent": {"below": 0.01, "located": 0.0, "control": 0.125}}
  base = rng.random(6)
  shared = rng.normal(size=(9, 1))  # a replicate's shift shared by its two mirrored edits: rho > 0
  effects = [EffectRecord("a", f"{m} gamma=2", x, {"mode": m, "gamma": 2.0}, mean=0.1, ci_low=0.0, ci_high=0.2,
                          p_value=0.5, scores=tuple(base + s * 0.1), control_effects=tuple(range(9)),
                          control_scores=tuple(map(tuple, base + s * (shared + 0.1 * rng.normal(size=(9, 6))))),
                          controls_planned=9, control_activity=activity)
             for m, x, s in (("enhance", "greater", 1.0), ("reverse", "less", -1.0))]
  results = _results(("a", effects, []))
  results = dataclasses.replace(results, units=[dataclasses.replace(results.units[0], baseline=tuple(base))])
  results = dataclasses.replace(results, primary=primary(config, results.units))
  back = InterveneResults.from_json(json.loads(json.dumps(results.to_json())))
  mirror = back.primary.extra["mirror"]
  assert mirror["edits"] == ["enhance gamma=2", "reverse gamma=2"] and mirror["n"] == 9 and mirror["rho"] > 0.5
  text = "\n".join(_headline(back))
  assert f"Mirrored replicates: rho = {mirror['rho']:.2f} between enhance gamma=2 and -(reverse gamma=2)" in text
  table = "\n".join(_controls(back))
  assert "## Controls: how they were drawn" in table and "mirrored" in table and "activation probability" in table
  assert "| a, enhance gamma=2 | located | 0.02 | 0.1 | 0.4 | 0% |  |" in table
  assert "|  | controls | 0.01 | 0.09 | 0.38 | 12% | 3 |" in table
  # Runs without recorded statistics say so instead of a table.
  bare = [dataclasses.replace(e, control_activity={"controls": "independent", "match": "layer", "fallbacks": 0})
          for e in effects]
  text = "\n".join(_controls(_results(("a", bare, []))))
  assert "independent" in text and "No activation statistics" in text and "| located |" not in text
