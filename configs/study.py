"""The pre-declared ValueLocate study: do the located value neurons steer value orientation further than
random neurons of the same shape? One run per model records once, locates once and evaluates every edit in
the same compiled calls. One model's study (M = smollm2-135m-instruct or gemma3-270m), three runs and a page:

  python -m launch.run --config=configs/study.py:model=$M --workdir=runs/study/model=$M
  python -m launch.run --config=configs/study_ve.py:lang=en,model=$M --workdir=runs/study_ve/lang=en_model=$M
  python -m launch.run --config=configs/study_ve.py:lang=zh,model=$M --workdir=runs/study_ve/lang=zh_model=$M
  python -m launch.results --workdirs=runs/study/model=$M,runs/study_ve/lang=en_model=$M,... \
      --out=docs/results/authors/study.md --title="..."

Everything the conclusion rests on is fixed here, before any score exists. One model's whole study is this run
plus configs/study_ve.py in English and in Chinese, in 60 minutes on a 2-core CPU (the budget): this design
was cut to fit it before any run, and the results page states the time measured.
- Contrast: the authors' (configs/valuelocate.py): each of the four values against its own reversed
  descriptions; `study.py:aspects` runs the opposing-aspect contrast instead. Results pages made before
  the authors' contrast was the default used the aspect contrast (each page names its commit).
- Data: every value description of the 8 groups (4 values x normal/reversed, 40 each) answers one situational
  question of the locate split; answers of 64 new tokens (128 before: the budget; the authors generate up to
  500). Evaluation on the first 20 held-out situations of each dimension in the eval split (of 40; 10 on
  Gemma, see the per-model cuts), which shares no situation with the locate split.
- Neurons: 0.5% of the model's MLP neurons per value (locate.size; the share the paper's 2000 neurons are of
  the 8B models it was sized for); the earlier grid of sizes is cut (budget).
- Primary test: one pooled test per model at size 0.5%, gamma 2, steer value p: the mean over the four
  values x {enhance, reverse} of each edit's mean change in P(value-aligned action), reverse counted with
  its sign flipped, against mirrored, activity-matched control replicates; one-sided, alpha 0.05. Sequential
  p (Besag & Clifford): up to 39 replicates (p can reach 0.025), stopping once 10 reach the located effect.
- Placebo (negative control): the same rule, sizes, edits and sequential test on a "set" located between two
  random halves of the first value's own descriptions; it must come out null.
- Positive control: LAPE language neurons on the same model (configs/languages.py:demo), once per model (the
  ValueExploration runs of the study do not repeat it).
- Taken apart (exploratory): each primary edit's push alone and clamp alone (intervene.decompose), each part
  with 4 control replicates from the same mirrored family.
- Dose-response (exploratory): gammas 0.5, 1, 2 and 4 at size 0.5%, fitted as effect = a + b * gamma with
  paired-bootstrap CIs; the grid points other than the primary carry no controls of their own (the fit, not a
  test, is their role).
- Yardsticks: flips, log-odds, the prompt yardstick, loss on neutral text, and the diff-in-means and one random
  direction at the located edit's norm, for every located edit at the primary point.
- Stability: each set located again on two halves of the descriptions (record.halves) and on the first 32 of the
  64 generated tokens (record.budget_tokens), each Jaccard against its chance value, "stable" above 10x chance.
- Cost, worst case (every test runs to 39 replicates): about 550 evaluations of 20 situations x 2 actions, each
  rescoring only the answers (steering acts on generated positions; the prompts are computed once).
- Per-model cuts (MODEL_CUTS), declared before the model's first score: Gemma 3 270M evaluates the first 10
  held-out situations of each dimension, not 20. A timing pilot (tiny recordings, scores not read) measured one
  evaluation of 20 situations x 2 actions at 5.7 s on Gemma against 2.7 s on SmolLM2 (its 262k-entry unembedding),
  and 3.4 s with 10 situations; its ValueExploration evaluations cost what SmolLM2's English ones do (4.0 s).
  With 20 situations Gemma's whole study would take about 70 minutes (SmolLM2's took 53), over the budget; with
  10 about 53. Everything else (replicates, h, the parts, the grid, the recording) is the same for both models.
  The model is therefore a config argument (`study.py:model=gemma3-270m`), not a sweep axis: a sweep would set
  config.model after the cut is chosen.
  Measured after the run (docs/results/authors/study.md): Gemma's whole study took 65 minutes, over the budget.
  The estimate of 53 assumed SmolLM2's early stops; Gemma's ValueLocate test and English placebo ran to their
  last replicates (the worst case, which a cut must be sized on).
- Gemma's second cut (MODEL_CUTS, and configs/study_ve.py's), declared on 2026-12-07 for a second run of
  Gemma's whole study within the budget, after the first run's scores had been read: its size comes from the
  first run's stage times alone, for the worst case (every sequential test to its last replicate): up to 19
  replicates in every primary test and placebo (p can reach 0.05, the classic 19 random controls of a Monte
  Carlo test at alpha 0.05; 39 in ValueLocate and 29 in ValueExploration before) and 2 control replicates per
  part taken apart (4 before), the 10 eval situations kept. From the first run's 4.5 s per ValueLocate
  evaluation and 8.5 s per ValueExploration one, the worst case is about 25 + 14 + 14 = 53 minutes. The first
  run (its design: this file at commit baa440a) stays the pre-declared result for Gemma
  (docs/results/authors/study.md); the second, on its own page
  (docs/results/authors/gemma_budget/study.md), is the same design at the budget's size, with less power.
  Measured after the second run: 50 minutes (ValueLocate with its positive control 28, ValueExploration 14 in
  English and 8 in Chinese, where the test stopped early), peak RSS 4.3 GB.
"""

import ml_collections as mlc

from configs import common, valuelocate

GAMMAS = (0.5, 1.0, 2.0, 4.0)
# Declared before the runs they cut (see the docstring): config arguments a model's study sets unless the command
# line sets them itself.
MODEL_CUTS = {"gemma3-270m": {"eval_items": 10, "primary": 19, "parts": 2}}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, aspects=False, primary=39, explore=0, parts=4, tokens=64, eval_items=20,
                         sizes="0.005", primary_size="0.005", decompose=True, budget_tokens=32,
                         model=common.DEFAULT_MODEL)
  common.preset(arg, **MODEL_CUTS.get(arg.model, {}))
  sizes = tuple(arg.sizes.split("+"))
  c = valuelocate.get_config(",".join(k for k in ("smoke", "aspects") if getattr(arg, k)) or None)
  if arg.smoke:
    # The smoke run checks the grid alone (valuelocate.py:smoke runs the decomposition).
    common.preset(arg, primary=3, explore=2, tokens=6, decompose=False, eval_items=4, budget_tokens=3)
  c.positive_control = "" if arg.smoke else "languages.py:demo"
  c.model = arg.model

  c.data.items_per_group = 2 if arg.smoke else 0  # every description of each aspect
  c.record.max_new_tokens = arg.tokens
  c.record.budget_tokens = arg.budget_tokens  # the sets located again on the first half of every answer
  c.locate.size = arg.primary_size
  c.locate.sizes = sizes if len(sizes) > 1 else ()  # one neuron set per pair and size rule, from one recording

  c.intervene.eval_items = arg.eval_items  # held-out situations per dimension
  c.intervene.gamma = GAMMAS
  point = lambda s, g: f"size={s},gamma={g:g},steer=p" if c.locate.sizes else None
  if c.locate.sizes:
    c.intervene.grid = tuple(point(s, g) for s in sizes for g in GAMMAS)
    c.intervene.primary_point = point(arg.primary_size, 2.0)
    c.intervene.primary_gamma = 0.0  # replaced by the point
  else:
    c.intervene.primary_gamma = 2.0
  c.intervene.controls_at = "all"
  c.intervene.decompose = arg.decompose
  c.intervene.decompose_controls = arg.parts  # per part taken apart
  c.intervene.n_controls = arg.explore  # per exploratory grid point (0: the dose-response fit only)
  c.intervene.primary_test = "pooled"
  c.intervene.primary_controls = arg.primary
  c.intervene.random_directions = 1  # beside each primary edit's diff-in-means direction (1 + 1 evaluations)
  # Sequential p (Besag & Clifford), fixed before any score: the primary replicates stop once 10 reach the located
  # effect (p = 10 / replicates looked at), else run to the last (p down to 1 / (R + 1)); a clear null stops after
  # about 10 / p replicates instead of paying for all. 0 = every replicate, the fixed-R rank p.
  c.intervene.sequential_h = min(10, arg.primary)
  return c
