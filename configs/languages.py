"""The positive control: LAPE language neurons (Tang et al. 2024), the one finding of this field that
replicates reliably. If deactivating them does not beat random neurons here, the pipeline is broken.

Teacher-forced statistics over the Chinese and the English texts of the shipped bilingual dilemmas (locate
split), LAPE's entropy rule across the two languages, then deactivation (a = 0, every position) of one
language's neurons that the other language's set does not hold. The metric is the held-out (eval split)
loss of that language minus the loss of the same dilemma in the other language, in nats per token; its
change is tested against random neuron sets with the same per-layer counts.

`configs/languages.py` is the full protocol; `:demo` the reduced run that `make demo` shows beside the
value results; `:smoke` a seconds-long check.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, demo=False, per_lang=0, eval_items=24, controls=99, targets="zh+en",
                         tokens=32, top=0.0)
  if arg.demo:
    # Enough for an effect of several nats per token against controls near 0.1; p can reach 0.05. 12 texts per
    # language (24 recorded, about 18 s teacher-forced) keep the demo in its budget.
    common.preset(arg, per_lang=12, eval_items=8, controls=19, targets="zh", tokens=24)
  if arg.smoke:
    common.preset(arg, per_lang=4, eval_items=3, controls=2, tokens=16)
  c = common.base_config("languages")

  c.data = mlc.ConfigDict()
  c.data.framework = "cvoice"  # a framework whose dilemmas are written in every language of data.langs
  c.data.langs = ("zh", "en")  # the groups: one per language
  c.data.chat = False  # texts are read as they are
  c.data.groups = ()  # () = the languages
  c.data.items_per_group = arg.per_lang  # locate-split dilemmas recorded per language; 0 = all
  c.data.seed = 0  # which dilemmas (a seeded order over the values)

  c.record.mode = "teacher_forced"
  c.record.batch_size = 16

  c.locate = mlc.ConfigDict()
  c.locate.rule = "vape"  # or "masks": the neuron sets of locate.masks instead of locating them
  c.locate.masks = ""  # a LAPE mask file (torch.save'd list over the recorded groups of per-layer indices)
  c.locate.presets = ("lape",)  # (filter 0.95, top 0.01, bar 0.95)
  c.locate.denominator = "tokens"
  c.locate.top_rate = arg.top  # share of all neurons kept before they are assigned to languages; 0 = the preset's

  c.intervene.kind = "deactivate"
  c.intervene.metric = "language_nll"
  c.intervene.targets = tuple(t for t in arg.targets.split("+") if t)  # languages whose neurons are deactivated
  c.intervene.text_prefix = "\n"  # the same neutral context before every scored text, in every language
  # Each text is scored on its first tokens only: a loss per token needs no whole dilemma, and every scored
  # token costs one forward per edit and control. 0 = the whole text.
  c.intervene.max_text_tokens = arg.tokens
  c.intervene.length_buckets = (16, 32, 40, 48, 64, 96, 128, 256, 512)
  c.intervene.eval_split = "eval"
  c.intervene.eval_items = arg.eval_items  # held-out dilemmas, each scored in every language; 0 = all
  c.intervene.n_controls = arg.controls  # 99: p can reach 0.01
  # The primary test, fixed before any score exists: each target language's deactivation on its own, Holm
  # across the targets (with 99 controls two tests can reach 0.05 after correction).
  c.intervene.primary_test = "each"
  c.intervene.batch_size = 16
  c.intervene.examples = 0
  return c
