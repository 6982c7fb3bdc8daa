"""ValueExploration: 12 C-voice values, VAPE "semantic" and "decision" neurons per value (support vs
conflict role-play), edited x5 / 0 by layer region; the released workbooks by path or the shipped set.

The support prompt speaks as one raised to revere the value, the conflict prompt as one raised to revere the
dilemma's anti-value (the authors' protocol). Every run first checks that the two personas change the unedited
model's choices on the locate dilemmas (intervene/manipulation.json; the report's first section): if they do
not, the support/conflict contrast is empty on that model and no located set can carry the value difference.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, per_group=15, tokens=48, controls=19, eval_items=0, lang="en",
                         values="")
  if arg.smoke:
    common.preset(arg, per_group=2, tokens=6, controls=2, eval_items=3)
    arg.values = arg.values or "harmony"
  c = common.base_config("valueexploration")

  # LAPE language neurons on the same model, at a reduced size (about a minute): the report's "Can this run
  # see an effect?" section.
  c.positive_control = "" if arg.smoke else "languages.py:demo"

  c.data = mlc.ConfigDict()
  c.data.framework = "cvoice"  # the shipped bilingual dilemmas
  # The released C-voice files instead: a folder of <value>-final.xlsx and test-zh-200.xlsx (then lang=zh).
  c.data.cvoice_activation = ""
  c.data.cvoice_eval = ""
  c.data.lang = arg.lang
  c.data.chat = True
  # Who speaks in the conflict prompts. "anti_value": the support template with the dilemma's anti-value in the
  # value's place (the authors' activation.py). "value_holder": the value's holder, told the dilemma pits the
  # value against its anti-value: the groups then differ by one sentence, not by the persona; kept only to
  # compare the two contrasts (the manipulation check measures each).
  c.data.conflict_persona = "anti_value"
  c.data.value_ids = tuple(v for v in arg.values.split("+") if v)  # () = all 12 values
  c.data.groups = ()  # () = "<value>-support" and "<value>-conflict" of each value
  c.data.items_per_group = arg.per_group  # 0 = all
  c.data.questions_per_description = 1
  c.data.seed = 0
  c.data.half_seed = 0  # the split of each group's items into halves (record.halves)

  c.record.max_new_tokens = arg.tokens
  # Each group's items recorded as two seeded halves (their sums are the group's statistics; no extra
  # generation, the host holds twice the group sums): the stability of every located set and the placebo.
  c.record.halves = True

  c.locate = mlc.ConfigDict()
  c.locate.rule = "vape"
  c.locate.presets = ("semantic", "decision")  # (filter, top, bar) = (0.5, .01, 0.5) / (0.95, .01, 0.95)
  c.locate.denominator = "tokens"  # "items" reproduces the authors' released masks (C / Q)
  c.locate.top_rate = 0.0  # share of all neurons kept per preset; 0 = the preset's
  # Stability, read as declared here before any set exists: each set is located again on each half of the items
  # (record.halves) and called "stable" when the two halves' sets overlap (Jaccard) more than stable_factor times
  # the Jaccard of two random sets of the same sizes.
  c.locate.stable_factor = 10.0

  c.intervene.kind = "value_exploration"
  c.intervene.regions = ("combined",)  # semantic neurons in middle layers, decision neurons at both ends
  c.intervene.directions = ("support", "conflict")
  c.intervene.factor = 5.0
  # "forced_choice" (default) scores both options by likelihood: one forward pass per edit, no parsing.
  # "choice_protocol" is the paper's own protocol: the model generates an answer ending in "Option A: x%
  # Option B: y%" and the metric is its support for the value-aligned option; it generates max_new_tokens
  # per item and edit (controls included) and small models often give no parseable verdict.
  c.intervene.metric = "forced_choice"
  c.intervene.max_new_tokens = 96  # choice_protocol: room to reason before the verdict line
  c.intervene.choice_template = "{question}\nWhat would you do? Answer in one sentence, in the first person."
  c.intervene.eval_split = "eval"
  c.intervene.eval_items = arg.eval_items
  c.intervene.n_controls = arg.controls
  # The manipulation check: P(value-aligned action) on the locate dilemmas after the support prompt and after
  # the conflict prompt (the unedited model, the recording prompts). Locate dilemmas per value it scores;
  # 0 = every locate dilemma of the run's values (15 each in the shipped data: 2 x 15 scored prompts). There is no
  # "off": without it a null result cannot be told from a contrast that never differed.
  c.intervene.manipulation_items = 2 if arg.smoke else 0
  # The primary test, fixed before any score exists: every located edit (value x direction) pooled into one
  # signed effect (toward support +, toward conflict -), against 19 control replicates (p can reach 0.05).
  c.intervene.primary_test = "pooled"
  # Sequential p (Besag & Clifford), fixed before any score: the primary replicates stop once 10 reach the located
  # effect (p = 10 / replicates looked at), else run to the last (p down to 1 / (R + 1)); a clear null stops after
  # about 10 / p replicates instead of paying for all. 0 = every replicate, the fixed-R rank p.
  c.intervene.sequential_h = min(10, arg.controls)
  # The placebo, fixed before any score: the same rule and sizes locate a "set" between two random halves of one
  # group's items (placebo_pair "" = the run's first pair, whose plus group is halved: the first value's support
  # group), and the same edits, controls and pooled sequential test run on that pair's eval items. A contrast without
  # any value difference must come out null; if it does not, the test cannot say no. Not part of the primary
  # test. Costs one more unit's scoring.
  c.intervene.placebo = True
  c.intervene.placebo_pair = ""
  return c
