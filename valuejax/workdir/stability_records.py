"""The record stage's statistics for the stability of located sets beyond the split halves: the generated
tokens' statistics under a shorter token budget (record.budget_tokens, from the same generation) and a second
recording of the same groups under another item pairing (record.pairing_seed2). Each is stored with the
groups' own names (halves joined), as record/stats.npz is, so a locator reads it as it reads that file."""

from __future__ import annotations

import os
from typing import Any

from valuejax import fileio as vio
from valuejax.workdir.state import Workdir

RECORD_BUDGET = os.path.join("record", "budget.npz")
RECORD_PAIRING = os.path.join("record", "pairing.npz")
RECORD_PAIRING_SUMMARY = os.path.join("record", "pairing.json")
# The second pairing's own checkpoints: it resumes as the main recording does.
PAIRING_CHECKPOINTS = os.path.join("record", "checkpoints_pairing")


def write_budget(wd: Workdir, stats: Any) -> list[str]:
  """The short-budget statistics (NeuronStats under the groups' own names); the budget is the config's
  record.budget_tokens, which the stage's fingerprint covers."""
  if wd.writer:
    stats.save(wd.path(RECORD_BUDGET))
  return [RECORD_BUDGET]


def write_pairing(wd: Workdir, stats: Any, seed: int, prompts: int, changed: int, tokens: int) -> list[str]:
  """The second pairing's statistics and a summary: its seed, the prompts recorded, how many of them differ
  from the first pairing's (by id: another situation paired with a description) and the tokens it generated."""
  if wd.writer:
    stats.save(wd.path(RECORD_PAIRING))
    vio.write_json(wd.path(RECORD_PAIRING_SUMMARY), {"seed": int(seed), "prompts": int(prompts),
                                                      "changed_prompts": int(changed),
                                                      "tokens_processed": int(tokens)})
  return [RECORD_PAIRING, RECORD_PAIRING_SUMMARY]


def read_stats(root: str, rel: str) -> Any:
  """The statistics stored at `rel` (RECORD_BUDGET or RECORD_PAIRING) under `root`, None when absent."""
  path = os.path.join(root, rel)
  if not os.path.exists(path):
    return None
  from valuejax.engine.stats import NeuronStats
  return NeuronStats.load(path)
