"""LAPE on value descriptions: teacher-forced statistics over every token, K-way activation-probability
entropy across the aspects, and deactivation (a = 0) judged by the likelihood of held-out descriptions.
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, per_group=30, controls=19, eval_items=10)
  if arg.smoke:
    common.preset(arg, per_group=3, controls=2, eval_items=2)
  c = common.base_config("lape")

  c.data = mlc.ConfigDict()
  c.data.framework = "schwartz"
  c.data.lang = "en"
  c.data.chat = False  # descriptions are read as plain text
  c.data.groups = ()  # () = every aspect of the taxonomy
  c.data.items_per_group = arg.per_group  # recorded; the next eval_items per group are held out
  c.data.questions_per_description = 1
  c.data.seed = 0

  c.record.mode = "teacher_forced"
  c.record.batch_size = 32

  c.locate = mlc.ConfigDict()
  c.locate.rule = "vape"  # or "masks": the neuron sets of locate.masks instead of locating them
  c.locate.masks = ""  # a LAPE mask file (torch.save'd list over the recorded groups of per-layer indices)
  c.locate.presets = ("lape",)  # (filter 0.95, top 0.01, bar 0.95)
  c.locate.denominator = "tokens"
  c.locate.top_rate = 0.0  # share of all neurons kept; 0 = the preset's

  c.intervene.kind = "deactivate"
  c.intervene.metric = "text_likelihood"
  c.intervene.text_prefix = "Something I believe:"
  c.intervene.eval_items = arg.eval_items
  c.intervene.n_controls = arg.controls
  # The primary test, fixed before any score exists: every group's deactivation pooled into one signed effect
  # (a lower likelihood of the group's own held-out texts counts +), against 19 control replicates.
  c.intervene.primary_test = "pooled"
  return c
