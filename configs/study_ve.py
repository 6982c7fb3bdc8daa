"""The pre-declared ValueExploration study: do the VAPE value neurons, scaled x5 / 0 at every position, move a
model's choices in value dilemmas further than random neurons of the same per-layer counts? One run per model
and language records once, locates once and scores every edit and control in the same compiled calls.

  python -m launch.sweep --config=configs/study_ve.py --workdir=runs/study_ve     # 2 models x 2 languages
  python -m launch.results --workdirs=runs/study_ve/lang=en_model=smollm2-135m-instruct,... \
      --out=docs/results/study_ve.md --title="ValueExploration study"

Everything the conclusion rests on is fixed here, before any score exists:
- Data: the shipped bilingual C-voice dilemmas. Every locate-split dilemma of every value (15 per value), read
  in role-play as one raised to revere the value and as one raised to revere its anti-value (the
  authors' protocol, data.conflict_persona = "anti_value"), answered with 128 new tokens; evaluation on every
  held-out dilemma of the eval split (7 per value), which shares no dilemma with the locate split. Each language
  (`data.lang`: en, zh) is its own run: recorded, located and scored in that language.
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
  +, toward conflict -) of the values in PRIMARY_VALUES, against 99 control replicates (p can reach 0.01);
  one-sided, alpha 0.05. Controls are mirrored (intervene.controls, valuejax/methods/design.py): replicate r of
  a value is one random relabelling of its whole located family, seeded by (intervene.control_seed + 1000 x the
  value's index, r), so its support and conflict edits swap the same random sets; values draw apart, and
  replicate r of the pooled statistic is the pooled mean over the r-th control of every edit.
  - PRIMARY_VALUES are two of the twelve values, drawn below by a seeded generator over the taxonomy's order
    (seed 20261130, the day the design was fixed), not by any score, neuron count or look at the data. Two,
    because scoring every value's two directions against 99 control replicates (24 x 100 evaluations of whole
    dilemmas) takes hours per run on a 2-core CPU. 2 x 2 x 100 was expected to fit the budget of 60 minutes
    per model; measured, it does not: each primary test alone is 400 evaluations of 3.6-5.3 s on this CPU
    (24-35 min per language), so two languages and the ValueLocate study exceed an hour per model
    (docs/results/study_ve.md gives each run's time).
- Exploratory: every other value's two directions, scored with their CIs and no controls (0, to fit the
  budget: the exploratory controls were cut, never the primary test's). Read them as hypotheses; the report
  lists the edits that move against the prediction as plainly as the others.
"""

import random

import ml_collections as mlc

from configs import common, valueexploration

# The taxonomy's order (data/cvoice/taxonomy.json).
VALUES = ("prosperity", "democracy", "civility", "harmony", "freedom", "equality", "justice", "rule_of_law",
          "patriotism", "dedication", "integrity", "friendliness")
PRIMARY_SEED = 20261130
PRIMARY_VALUES = tuple(sorted(random.Random(PRIMARY_SEED).sample(VALUES, 2)))


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, primary=99, explore=0, tokens=128, lang="en")
  if arg.smoke:
    common.preset(arg, primary=3, explore=2, tokens=6)
  # smoke: the primary values and one exploratory value.
  smoke_values = PRIMARY_VALUES + tuple(v for v in VALUES if v not in PRIMARY_VALUES)[:1]
  base = f"smoke,lang={arg.lang},values={'+'.join(smoke_values)}" if arg.smoke else f"lang={arg.lang}"
  c = valueexploration.get_config(base)
  c.positive_control = "" if arg.smoke else "languages.py:demo"

  c.data.items_per_group = 2 if arg.smoke else 0  # every locate dilemma of each value
  c.record.max_new_tokens = arg.tokens

  c.intervene.eval_items = 2 if arg.smoke else 0  # every held-out dilemma
  c.intervene.manipulation_items = 2 if arg.smoke else 0  # every locate dilemma of every value
  c.intervene.n_controls = arg.explore  # per exploratory edit
  c.intervene.primary_test = "pooled"
  c.intervene.primary_pairs = PRIMARY_VALUES
  c.intervene.primary_controls = arg.primary
  # Sequential p (Besag & Clifford), fixed before any score: the primary replicates stop once 10 reach the located
  # effect (p = 10 / replicates looked at), else run to the last (p down to 1 / (R + 1)); a clear null stops after
  # about 10 / p replicates instead of paying for all. 0 = every replicate, the fixed-R rank p.
  c.intervene.sequential_h = min(10, arg.primary)

  if not arg.smoke:
    c.sweep.model = ("smollm2-135m-instruct", "gemma3-270m")
    c.sweep.data = mlc.ConfigDict()
    c.sweep.data.lang = ("en", "zh")
  return c
