"""The pre-declared ValueExploration study: do the VAPE value neurons, scaled x5 / 0 at every position, move a
model's choices in value dilemmas further than random neurons of the same per-layer counts? One run per model
and language records once, locates once and scores every edit and control in the same compiled calls; the
commands of one model's whole study are in configs/study.py.

Everything the conclusion rests on is fixed here, before any score exists. One model's whole study is
configs/study.py plus this config in English and in Chinese, in 60 minutes on a 2-core CPU (the budget): this
design was cut to fit it before any run, and the results page states the time measured.
- Data: the shipped bilingual C-voice dilemmas of the two PRIMARY_VALUES. Every locate-split dilemma of each
  (15 per value), read in role-play as one raised to revere the value and as one raised to revere its
  anti-value (the authors' protocol, data.conflict_persona = "anti_value"), answered with 64 new tokens (the
  budget; the authors generate up to 500); evaluation on every held-out dilemma of the eval split (7 per value),
  which shares no dilemma with the locate split. Each language (`data.lang`: en, zh) is its own run: recorded,
  located and scored in that language. VAPE locates each value's sets from that value's two groups alone, so
  the other ten values, not recorded (budget), change nothing in these sets.
- Manipulation check, read before any neuron result: P(value-aligned action) on every locate dilemma of the
  run's values after its support prompt and after its conflict prompt (the unedited model; per value and
  pooled, paired difference support - conflict with a bootstrap CI). The personas separate the model's choices
  when the pooled CI lies above 0; otherwise the report says the support/conflict contrast is empty on that
  model, and the located sets cannot carry the value difference whatever the edits do.
- Neurons: VAPE "semantic" (0.5, 0.01, 0.5) and "decision" (0.95, 0.01, 0.95) sets per value (support vs
  conflict), edited in the "combined" region (semantic in the middle layers, decision at both ends), x5 for
  the direction's own neurons and 0 for the other's, at every position (the paper's edit).
- Metric: P(value-aligned action) in a forced choice from length-normalised likelihoods (judge-free).
- Primary test, one per model and language: one pooled test over the two directions (toward support counted
  +, toward conflict -) of the two PRIMARY_VALUES, against mirrored, activity-matched control replicates
  (intervene.controls, valuejax/methods/design.py: replicate r of a value is one random relabelling of its
  whole located family, so its support and conflict edits swap the same random sets); one-sided, alpha 0.05.
  Sequential p (Besag & Clifford): up to 29 replicates (p can reach 1/30), stopping once 5 reach the located
  effect (a null near p = 0.5 stops after about 10). Fewer than the ValueLocate study's 39 with h = 10: an edit at
  every position rescores whole dilemmas, about three times the cost of one of its evaluations (the budget).
  - PRIMARY_VALUES are two of the twelve values, drawn below by a seeded generator over the taxonomy's order
    (seed 20261130, the day the design was fixed), not by any score, neuron count or look at the data.
- Placebo (negative control): the same rule, edits and sequential test on "sets" located between two random
  halves of the first value's support dilemmas; it must come out null.
- The positive control (LAPE language neurons) runs once per model, in its configs/study.py run; these runs
  do not repeat it.
- Yardsticks: flips, log-odds, the prompt yardstick, loss on neutral text, and the diff-in-means and one random
  direction at each located edit's norm. Stability: split halves and the first 32 of the 64 tokens, each
  against chance ("stable" above 10x).
- Cost, worst case (both tests run to 29 replicates): about 190 evaluations of 7 dilemmas x 2 actions.
- Per-model cuts (MODEL_CUTS), chosen with the model as a config argument (`study_ve.py:lang=en,model=M`):
  Gemma 3 270M runs up to 19 replicates per test (p can reach 0.05), declared on 2026-12-07 for the second run
  of its whole study within the budget (see configs/study.py, "Gemma's second cut"); its first run used 29.
"""

import random

import ml_collections as mlc

from configs import common, valueexploration

# The taxonomy's order (data/cvoice/taxonomy.json).
VALUES = ("prosperity", "democracy", "civility", "harmony", "freedom", "equality", "justice", "rule_of_law",
          "patriotism", "dedication", "integrity", "friendliness")
PRIMARY_SEED = 20261130
PRIMARY_VALUES = tuple(sorted(random.Random(PRIMARY_SEED).sample(VALUES, 2)))


# Declared before the runs they cut (see the docstring): config arguments a model's study sets unless the command
# line sets them itself.
MODEL_CUTS = {"gemma3-270m": {"primary": 19}}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, primary=29, tokens=64, budget_tokens=32, lang="en",
                         model=common.DEFAULT_MODEL)
  common.preset(arg, **MODEL_CUTS.get(arg.model, {}))
  if arg.smoke:
    common.preset(arg, primary=3, tokens=6, budget_tokens=3)
  values = "+".join(PRIMARY_VALUES)
  base = f"smoke,lang={arg.lang},values={values}" if arg.smoke else f"lang={arg.lang},values={values}"
  c = valueexploration.get_config(base)
  c.positive_control = ""  # the model's positive control is its configs/study.py run's
  c.model = arg.model

  c.data.items_per_group = 2 if arg.smoke else 0  # every locate dilemma of each value
  c.record.max_new_tokens = arg.tokens
  c.record.budget_tokens = arg.budget_tokens  # the sets located again on the first half of every answer

  c.intervene.eval_items = 2 if arg.smoke else 0  # every held-out dilemma
  c.intervene.manipulation_items = 2 if arg.smoke else 0  # every locate dilemma of every value
  c.intervene.n_controls = 0  # no edit outside the primary test's
  c.intervene.primary_test = "pooled"
  c.intervene.primary_pairs = PRIMARY_VALUES
  c.intervene.primary_controls = arg.primary
  c.intervene.direction_yardstick = True  # 1 + 1 evaluations per primary edit
  c.intervene.random_directions = 1
  # Sequential p (Besag & Clifford), fixed before any score: the primary replicates stop once 5 reach the located
  # effect (p = 5 / replicates looked at), else run to the last (p down to 1 / (R + 1)); a clear null stops after
  # about 5 / p replicates instead of paying for all. 0 = every replicate, the fixed-R rank p.
  c.intervene.sequential_h = min(5, arg.primary)

  if not arg.smoke:
    # The languages as a sweep of one model's runs; the model is a config argument (its cuts are chosen with it).
    c.sweep.data = mlc.ConfigDict()
    c.sweep.data.lang = ("en", "zh")
  return c
