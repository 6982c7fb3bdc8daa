"""The default run: ValueLocate as the authors ran it, on Schwartz's four higher-order values.

Each value X is located against its own reversed descriptions (8 recorded groups: 4 values x normal/reversed),
and validated by steering: enhance pushes X's set and clamps X_reversed's, reverse swaps them, for all four
values, scored on the held-out situations of X's dimension (enhance X should raise P(X's action)).

`--config=configs/valuelocate.py` (what `make demo` runs), `:smoke` for a seconds-long check, `:aspects` for
the other contrast (each dimension's two opposing aspects, "holds X vs holds Y"; what results pages made before
the authors' contrast was the default used). 19 random controls per strongest edit: the fewest with which a
permutation p-value can reach 0.05.

The sizes (12 descriptions per group answered with 32 new tokens, 4 held-out situations per dimension, one
gamma, the sequential p's h = 3, the positive control's 12 texts per language) are set by the demo's budget of
5 minutes on a 2-core CPU, not by power (a pooled test of 8 edits against 19 replicates scores up to 160 edits,
each a forward pass over the options): the powered, pre-declared answer is configs/study.py (every
description, 64 new tokens, 20 held-out situations per dimension, a gamma grid, up to 39 control replicates).

`:decompose` (on in `:smoke` and in configs/study.py) also runs every primary edit taken apart, its push alone
and its clamp alone, each with its own controls from the same mirrored family: exploratory, outside the
primary test. Off by default here: with controls at the strongest gamma only it would nearly triple this
demo's evaluations (two parts x two modes x 19 controls per pair).
"""

import ml_collections as mlc

from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, aspects=False, items=12, tokens=32, controls=19, eval_items=4,
                         sweep_gamma=False, decompose=False)
  if arg.smoke:
    common.preset(arg, items=2, tokens=6, controls=2, eval_items=4, decompose=True)
  c = common.base_config("valuelocate")

  # LAPE language neurons on the same model, at a reduced size (about a minute): the report's "Can this run
  # see an effect?" section.
  c.positive_control = "" if arg.smoke else "languages.py:demo"

  # Activation prompts: each first-person value description answers one situational question.
  c.data = mlc.ConfigDict()
  c.data.framework = "schwartz"  # a shipped framework name or a framework folder
  c.data.lang = "en"
  c.data.chat = True  # wrap prompts in the tokenizer's chat template
  c.data.groups = ()  # description groups to record; () = both groups of every locate pair
  c.data.items_per_group = arg.items  # 0 = all
  c.data.questions_per_description = 1
  c.data.seed = 0
  c.data.half_seed = 0  # the split of each group's items into halves (record.halves)

  c.record.mode = "generate"
  c.record.batch_size = 16
  c.record.max_new_tokens = arg.tokens
  # Each group's items recorded as two seeded halves (their sums are the group's statistics; no extra
  # generation, the host holds twice the group sums): the stability of every located set and the placebo.
  c.record.halves = True

  c.locate = mlc.ConfigDict()
  c.locate.rule = "valuelocate"
  # "reversed": each value X against X_reversed (the authors' processn_new.py::process_trait, 4 pairs);
  # "aspects": each dimension's two opposing aspects (2 pairs), a different experiment (see docs/fidelity.md).
  c.locate.contrast = "aspects" if arg.aspects else "reversed"
  c.locate.pairs = ()  # "X:X_reversed" (or "X:Y" with contrast aspects) pairs; () = every pair of the contrast
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
  c.locate.sizes = ()  # several sizes located at once, each set named <pair>@<size> (a grid); () = locate.size
  c.locate.steer_value = "p"  # "p" (activation probability) or "v95" (NPTI; needs record.hist)
  # Stability, read as declared here before any set exists: each set is located again on each half of the items
  # (record.halves) and called "stable" when the two halves' sets overlap (Jaccard) more than stable_factor times
  # the Jaccard of two random sets of the same sizes.
  c.locate.stable_factor = 10.0

  # Steering at decode steps: target a <- a + gamma * v * sigmoid(10 (delta - 0.15)), opposite min(a, 0).
  c.intervene.kind = "steering"
  # One gamma, the primary test's, in this demo (the dose-response over gammas is configs/study.py's grid); the
  # smoke run keeps two so that the dose-response path runs in the tests.
  c.intervene.gamma = (0.5, 2.0) if arg.smoke else (2.0,)
  c.intervene.example_max_new_tokens = 32  # the report's example answers: 48 tokens cost 27 s of the demo
  c.intervene.modes = ("enhance", "reverse")
  c.intervene.keep_prob = 0.9
  # The primary edits taken apart as well: push-only and clamp-only, each with its own mirrored controls
  # (exploratory; design.decomposition). See the docstring for the cost.
  c.intervene.decompose = arg.decompose
  c.intervene.decompose_controls = arg.controls
  c.intervene.metric = "forced_choice"  # p(aligned action) by continuation likelihood, judge-free
  # Each primary edit beside a diff-in-means edit and random directions of its size: 1 + random_directions
  # evaluations per primary edit; one random direction in this demo (its budget), 3 in configs/study.py.
  c.intervene.direction_yardstick = True
  c.intervene.random_directions = 1
  # The question is the user turn; each action is scored as the start of the assistant's answer.
  c.intervene.choice_template = "{question}\nAnswer in one sentence, in the first person."
  c.intervene.eval_split = "eval"
  c.intervene.eval_items = arg.eval_items  # situations per dimension; 0 = all
  c.intervene.n_controls = arg.controls
  c.intervene.controls_at = "strongest"  # random controls for the largest gamma only, or "all" gammas
  # The primary test, fixed here before any score exists: the located edits at the strongest gamma (four
  # values x enhance/reverse, or two pairs x enhance/reverse with :aspects) pooled into one signed effect.
  # One test needs no correction, so 19 controls let p reach 0.05; every other edit and the per-edit p-values
  # are exploratory.
  c.intervene.primary_test = "pooled"  # "pooled", "each" (Holm across the primary edits) or "" (none)
  c.intervene.primary_gamma = 2.0
  # Sequential p (Besag & Clifford), fixed before any score: the primary replicates stop once h reach the located
  # effect (p = h / replicates looked at), else run to the last (p down to 1 / (R + 1)); a clear null stops after
  # about h / p replicates instead of paying for all. 0 = every replicate, the fixed-R rank p. h = 3 here (the
  # demo's budget: a null near p = 0.3 stops after about 10 replicates instead of 18 with h = 5; p still reaches
  # 1 / 20 when no replicate reaches the effect, and the test stays exact), 10 in the studies.
  c.intervene.sequential_h = min(3, arg.controls)
  # The placebo, fixed before any score: the same rule and sizes locate a "set" between two random halves of one
  # group's items (placebo_pair "" = the run's first pair, whose plus group is halved: the first value X), and
  # the same edits, controls and pooled sequential test run on that pair's eval items. A contrast without
  # any value difference must come out null; if it does not, the test cannot say no. Not part of the primary
  # test. Costs one more unit's scoring.
  c.intervene.placebo = True
  c.intervene.placebo_pair = ""

  # The LLM judge of --config.intervene.metric=judge (ValueLocate's own readout; see docs/judge.md). Unused by the
  # default metric. Answers of up to judge_max_new_tokens greedy tokens, each rated `samples` times at
  # `temperature` with at most `max_tokens` reply tokens (the authors: 20 at 2.0, 5 tokens, answers of up to
  # 500 tokens), through any OpenAI-compatible API at base_url (e.g. http://127.0.0.1:8000/v1).
  c.intervene.judge_max_new_tokens = 128
  c.intervene.judge = mlc.ConfigDict()
  c.intervene.judge.base_url = ""  # required with metric=judge (or $VALUEJAX_JUDGE_BASE_URL)
  c.intervene.judge.model = ""  # the name the server serves (or $VALUEJAX_JUDGE_MODEL)
  c.intervene.judge.api_key_env = "VALUEJAX_JUDGE_API_KEY"  # the variable holding the key; unset = no key sent
  c.intervene.judge.samples = 20
  c.intervene.judge.temperature = 2.0
  c.intervene.judge.max_tokens = 5
  c.intervene.judge.timeout_s = 60.0
  c.intervene.judge.retries = 5  # tries per sample while the reply is not a score 1..5
  c.intervene.judge.http_retries = 5  # retries of a request after 429, 5xx or a timeout, with backoff
  c.intervene.judge.concurrency = 4  # requests in flight at once
  c.intervene.judge.cache_dir = ""  # "" = $VALUEJAX_CACHE/judge, else ~/.cache/valuejax/judge
  c.intervene.judge.rubrics = ""  # a rubric file; "" = the shipped data/judge_rubrics.json

  if arg.sweep_gamma:
    c.sweep.intervene = mlc.ConfigDict()
    c.sweep.intervene.gamma = ((0.1,), (0.5,), (1.0,), (2.0,))
  return c
