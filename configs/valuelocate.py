"""The default run: ValueLocate on Schwartz's higher-order dimensions, steering swept over gamma.

`--config=configs/valuelocate.py` (what `make demo` runs), `:smoke` for a seconds-long check.
19 random controls per strongest edit: the fewest with which a permutation p-value can reach 0.05.

The sizes (24 descriptions per aspect answered with 32 new tokens, 8 held-out situations per dimension) are
set by the demo's budget of 5 minutes on a 2-core CPU, installation included, not by power: the powered,
pre-declared answer is configs/study.py (every description, 128 new tokens, every held-out situation, 99
control replicates), with its results in docs/results/study.md.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, items=24, tokens=32, controls=19, eval_items=8,
                         sweep_gamma=False)
  if arg.smoke:
    common.preset(arg, items=2, tokens=6, controls=2, eval_items=4)
  c = common.base_config("valuelocate")

  # LAPE language neurons on the same model, at a reduced size (about a minute): the report's "Can this run
  # see an effect?" section.
  c.positive_control = "" if arg.smoke else "languages.py:demo"

  # Activation prompts: each first-person value description answers one situational question.
  c.data = mlc.ConfigDict()
  c.data.framework = "schwartz"  # a shipped framework name or a framework folder
  c.data.lang = "en"
  c.data.chat = True  # wrap prompts in the tokenizer's chat template
  c.data.groups = ()  # description groups to record; () = both aspects of every locate pair
  c.data.items_per_group = arg.items  # 0 = all
  c.data.questions_per_description = 1
  c.data.seed = 0

  c.record.mode = "generate"
  c.record.batch_size = 16
  c.record.max_new_tokens = arg.tokens

  c.locate = mlc.ConfigDict()
  c.locate.rule = "valuelocate"
  c.locate.pairs = ()  # "plus:minus" aspect pairs; () = the two aspects of every taxonomy dimension
  c.locate.threshold = 0.1
  c.locate.min_count = 2000
  # Neurons kept per aspect. "paper" = max(min_count, #{delta >= threshold}), the published rule for 7-9B
  # models (2000 is 0.44% of Llama-3-8B's neurons but 4.3% of SmolLM2-135M's); a number below 1 = that
  # fraction of all MLP neurons; an integer = exact count. Written as a string ("0.005", "paper").
  # Default 0.5% of the model (230 neurons per aspect on SmolLM2-135M): the share the paper's 2000 neurons
  # are of the 8B models it was sized for, so the edit and each random control touch as much of a small
  # model as the published protocol touches of a large one; 4.3% per aspect (8.7% per steering edit) made the
  # controls themselves disruptive. The language neurons of the positive control are of the same order
  # (top 1% of neurons, split between two languages).
  c.locate.size = "0.005"
  c.locate.steer_value = "p"  # "p" (activation probability) or "v95" (NPTI; needs record.hist)

  # Steering at decode steps: target a <- a + gamma * v * sigmoid(10 (delta - 0.15)), opposite min(a, 0).
  c.intervene.kind = "steering"
  c.intervene.gamma = (0.5, 2.0)
  c.intervene.modes = ("enhance", "reverse")
  c.intervene.keep_prob = 0.9
  c.intervene.metric = "forced_choice"  # p(aligned action) by continuation likelihood, judge-free
  # The question is the user turn; each action is scored as the start of the assistant's answer.
  c.intervene.choice_template = "{question}\nAnswer in one sentence, in the first person."
  c.intervene.eval_split = "eval"
  c.intervene.eval_items = arg.eval_items  # situations per dimension; 0 = all
  c.intervene.n_controls = arg.controls
  c.intervene.controls_at = "strongest"  # random controls for the largest gamma only, or "all" gammas
  # The primary test, fixed here before any score exists: the four located edits at the strongest gamma
  # (two pairs x enhance/reverse) pooled into one signed effect. One test needs no correction, so 19
  # controls let p reach 0.05; every other edit and the per-edit p-values are exploratory.
  c.intervene.primary_test = "pooled"  # "pooled", "each" (Holm across the primary edits) or "" (none)
  c.intervene.primary_gamma = 2.0

  if arg.sweep_gamma:
    c.sweep.intervene = mlc.ConfigDict()
    c.sweep.intervene.gamma = ((0.1,), (0.5,), (1.0,), (2.0,))
  return c
