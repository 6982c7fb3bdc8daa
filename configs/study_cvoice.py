"""ValueExploration on the authors' own benchmark, pre-declared: the released C-voice workbooks (Chinese) of
repo xuyuemei/Value-neuron-main2, read from a folder given on the command line and never shipped or committed.
One run per model (M = smollm2-135m-instruct or gemma3-270m):

  python -m launch.run --config=configs/study_cvoice.py:release=<folder>,model=$M --workdir=runs/cvoice/model=$M

where <folder> holds the release's data/ files: the twelve `<value>-final.xlsx` activation workbooks and
`test-zh-200.xlsx` (for example `git archive <commit> data | tar -x`, from a clone of the repository). The
results page names the release commit the files came from.

Everything the conclusion rests on is fixed here, before any score exists; the design is configs/study_ve.py's
(the same two seeded PRIMARY_VALUES, rule, edits, metric, mirrored activity-matched controls and pooled
one-sided test), with the authors' data in place of the shipped dilemmas and these differences:
- Data: the first 50 rows of each primary value's activation workbook (civility 207 rows, dedication 201 in
  the release), each read in role-play as the value's holder and as the anti-value's (the authors' protocol),
  answered with 64 new tokens; evaluation on the first 100 rows per value of test-zh-200.xlsx, the authors'
  evaluation rows. The locate rows are cut from all of them (about 200 per value) by cost: a recorded prompt
  costs about 1.7 s on this CPU (a Chinese dilemma is about 380 SmolLM2 tokens), so all rows would cost about
  25 minutes per model before any score.
- Manipulation check on every recorded dilemma (50 per value).
- Primary test: up to 19 replicates (p can reach 0.05), stopping once 3 reach the located effect (a null near
  p = 0.5 stops after about 6). A pilot of the data path (4 recorded prompts per group, scores not read)
  measured one evaluation of 100 dilemmas x 2 actions at about 66 s on SmolLM2, about 14 times the study's
  7-dilemma evaluations; each replicate costs 4 evaluations (2 values x 2 directions), so h = 3 (the study's
  5 would cost about a third more under the null).
- No placebo and no direction yardsticks (each would cost as much as the primary test again or more); the
  shipped-data runs of configs/study_ve.py carry both. The prompt yardstick, flips, log-odds and the loss on
  neutral text stay.
- Cost: about 45 minutes per model under the null (record about 6, manipulation check about 2, located edits
  about 7, controls about 27); if every replicate runs, about 100.
  Measured after the runs: SmolLM2 (docs/results/authors/cvoice/cvoice.md) took about 85 s per evaluation
  alone, not 66, and its test ran all 19 replicates: 145 minutes of wall time, part of it beside other work.
  Gemma (docs/results/authors/cvoice/gemma.md; its tokenizer writes a released dilemma's context and actions
  in about a third of SmolLM2's tokens, 59 vs 165 on average) took about 40 s per evaluation and stopped
  after 6 replicates: 26 minutes alone.
"""

import ml_collections as mlc

from configs import common, study_ve
from valuejax.data.cvoice import EVAL_WORKBOOK
from valuejax.errors import ValueJaxError

EVAL_ROWS = 100  # the authors' evaluation rows: the first 100 per value of test-zh-200.xlsx


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, release="", model=common.DEFAULT_MODEL, per_group=50, primary=19, h=3, tokens=64,
                         budget_tokens=32)
  if not arg.release:
    raise ValueJaxError("configs/study_cvoice.py needs the folder of the released C-voice workbooks",
                        "config string (file.py:ARG)",
                        "write configs/study_cvoice.py:release=<folder with <value>-final.xlsx and "
                        f"{EVAL_WORKBOOK}>,model=<model>")
  c = study_ve.get_config(f"lang=zh,model={arg.model},primary={arg.primary},tokens={arg.tokens},"
                          f"budget_tokens={arg.budget_tokens}")
  c.data.cvoice_activation = arg.release  # its *-final.xlsx replace the shipped locate split
  c.data.cvoice_eval = ""  # the folder's own EVAL_WORKBOOK replaces the shipped eval split
  c.data.items_per_group = arg.per_group
  c.intervene.eval_items = EVAL_ROWS
  c.intervene.manipulation_items = arg.per_group
  c.intervene.sequential_h = min(arg.h, arg.primary)
  c.intervene.placebo = False
  c.intervene.direction_yardstick = False
  c.intervene.random_directions = 0
  c.sweep = mlc.ConfigDict()  # one language (zh, the release's only one); the model is the config argument
  return c
