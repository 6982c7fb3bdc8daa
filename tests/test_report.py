"""The report's headline: per-edit verdicts and the family-wise correction across the tested edits."""

from valuejax.report.markdown import _headline


def _effect(pair, p, mean, lo, hi, controls):
  return {"pair": pair, "edit": "reverse gamma=2", "expected": "less", "mean": mean, "ci_low": lo, "ci_high": hi,
          "p_value": p, "alpha": 0.05, "control_effects": controls}


def test_headline_reports_holm_correction():
  controls = [0.01 * i for i in range(19)]
  metrics = {"n_controls": 19, "metric": "p_aligned", "pairs": [
      {"effects": [_effect("a", 0.05, -0.04, -0.06, -0.01, controls)]},
      {"effects": [_effect("b", 0.6, -0.001, -0.02, 0.02, controls)]},
  ]}
  text = "\n".join(_headline(metrics))
  assert "**causal**" in text and "**no effect**" in text
  assert "Correcting for 2 tests (Holm): 0 of the 1 causal findings keep p <= 0.05" in text
  assert "adjusted p = 0.1" in text
  assert "No effect survives correction for 2 tests" in text


def test_headline_counts_findings_that_survive_correction():
  controls = [0.01 * i for i in range(19)]
  metrics = {"n_controls": 19, "pairs": [
      {"effects": [_effect("a", 0.01, -0.04, -0.06, -0.01, controls)]},
      {"effects": [_effect("b", 0.6, -0.001, -0.02, 0.02, controls)]},
  ]}
  text = "\n".join(_headline(metrics))
  assert "**1 of 2 edits tested against random controls move value orientation" in text
  assert "(after correcting for the number of tests)" in text


def test_headline_without_correction_for_a_single_test():
  metrics = {"n_controls": 19, "pairs": [{"effects": [_effect("a", 0.05, -0.04, -0.06, -0.01, [0.0] * 19)]}]}
  text = "\n".join(_headline(metrics))
  assert "**causal**" in text and "Holm" not in text


def test_not_computable_edits_are_listed():
  nc = {"pair": "harmony", "edit": "support x5", "computable": False, "n": 1,
        "describe": "support x5: not computable, 1 item(s) parsed under both the baseline and the edit (2 dropped)"}
  only = "\n".join(_headline({"pairs": [{"pair": "harmony", "effects": [], "not_computable": [nc]}]}))
  assert "No measurement" in only and "**not computable** - support x5: not computable, 1 item(s)" in only
  controls = [0.0] * 19
  mixed = "\n".join(_headline({"n_controls": 19, "pairs": [
      {"pair": "a", "effects": [_effect("a", 0.5, 0.0, -0.1, 0.1, controls)], "not_computable": [nc]}]}))
  assert "**no effect**" in mixed and "**not computable**" in mixed


def _pooled(mean, lo, hi, p, controls):
  return {"test": "pooled", "declared": "one pooled test: ...", "edits": ["a, e1", "b, e2"],
          "result": {"mean": mean, "ci_low": lo, "ci_high": hi, "p_value": p, "n_edits": 2,
                     "n_controls": len(controls), "control_effects": controls, "alpha": 0.05,
                     "significant": p <= 0.05 and lo > 0}}


def test_headline_leads_with_the_declared_primary_test():
  controls = [0.01 * i for i in range(19)]
  effects = [_effect("a", 0.01, -0.04, -0.06, -0.01, controls)]
  for primary, head in ((_pooled(0.3, 0.2, 0.4, 0.05, controls), "**Causal:"),
                        (_pooled(0.05, 0.01, 0.09, 0.4, controls), "**Not specific:"),
                        (_pooled(-0.05, -0.09, -0.01, 1.0, controls), "**Opposite:"),
                        (_pooled(0.0, -0.05, 0.05, 0.5, controls), "**No effect:")):
    text = "\n".join(_headline({"n_controls": 19, "primary": primary, "pairs": [{"effects": effects}]}))
    assert text.index("**Primary test**") < text.index(head) < text.index("exploratory")
    assert "Holm" not in text  # one declared test: nothing to correct; the per-edit list is exploratory
  each = {"test": "each", "declared": "one test per located edit, Holm-corrected", "edits": ["a, e1"],
          "result": [{"edit": "a, e1", "mean": -0.04, "ci_low": -0.06, "ci_high": -0.01, "p_value": 0.01,
                      "adjusted_p": 0.02, "significant": True}]}
  text = "\n".join(_headline({"n_controls": 19, "primary": each, "pairs": [{"effects": effects}]}))
  assert "**1 of 1 primary edits" in text and "Holm-adjusted p = 0.02: **significant**" in text


def test_positive_control_section_says_whether_the_run_could_see_an_effect(tmp_path):
  import json
  import os
  from valuejax.report.markdown import _positive_control
  sub = tmp_path / "positive_control"
  os.makedirs(sub / "intervene")
  (sub / "config.json").write_text(json.dumps({"config": {"model": "m", "data": {"langs": ["zh", "en"]}}}))
  controls = [0.01 * i for i in range(19)]
  effect = {"pair": "zh", "edit": "deactivate zh-only neurons", "expected": "greater", "mean": 7.0, "ci_low": 6.5,
            "ci_high": 7.5, "p_value": 0.05, "alpha": 0.05, "control_effects": controls, "n": 8,
            "n_neurons": 222, "components": {"target_nll": 7.03, "other_nll": 0.03}}
  (sub / "intervene" / "metrics.json").write_text(json.dumps({"pairs": [{"effects": [effect]}]}))
  text = "\n".join(_positive_control(str(tmp_path), {"positive_control": "languages.py:demo"}))
  assert "changed the target language's loss by +7.03 and the other's by +0.03" in text
  assert "p = 0.05, the smallest possible with 19 controls. **causal**" in text and "\nYes:" in text
  effect.update(mean=0.1, ci_low=-0.1, ci_high=0.3, p_value=0.4)
  (sub / "intervene" / "metrics.json").write_text(json.dumps({"pairs": [{"effects": [effect]}]}))
  assert "**No: the positive control did not" in "\n".join(_positive_control(str(tmp_path), {"positive_control": "x"}))
  assert _positive_control(str(tmp_path), {"positive_control": ""}) == []
