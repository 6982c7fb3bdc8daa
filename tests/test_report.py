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
