"""The workdir's layout: every file a stage writes and the report reads, named once."""

from __future__ import annotations

import json
import os
from typing import Any

STAGES = ("record", "locate", "intervene", "report")

CONFIG = "config.json"  # the resolved config, commit and command of the last run in the workdir
TIMINGS = "timings.json"  # seconds and peak RSS per stage
RECORD_STATS = os.path.join("record", "stats.npz")  # the statistics the locators read
PROMPT_STATS = os.path.join("record", "prompt_stats.npz")
RECORD_TEXTS = os.path.join("record", "texts.jsonl")
RECORD_SUMMARY = os.path.join("record", "summary.json")
RECORD_CHECKPOINTS = os.path.join("record", "checkpoints")
LOCATE = "locate"  # <set>.npz (read by intervene), <set>.json (for people), <set>_per_layer.png
LOCATE_SUMMARY = os.path.join("locate", "summary.json")
METRICS = os.path.join("intervene", "metrics.json")
METRICS_CSV = os.path.join("intervene", "metrics.csv")
EFFECTS_CSV = os.path.join("intervene", "effects.csv")
EXAMPLES = os.path.join("intervene", "examples.jsonl")
REPORT = "report.md"
FIGURES = "report"  # the report's figures
POSITIVE_CONTROL = "positive_control"  # the sub-workdir of a run's positive control (config.positive_control)


def done_file(stage: str) -> str:
  return os.path.join(stage, "done.json")


def neuron_set(name: str, ext: str = "npz") -> str:
  return os.path.join(LOCATE, f"{name}.{ext}")


def read(root: str, rel: str) -> Any:
  """A JSON (or JSON lines) file of the workdir, or None when it is not there."""
  try:
    with open(os.path.join(root, rel), encoding="utf-8") as f:
      if rel.endswith(".jsonl"):
        return [json.loads(line) for line in f if line.strip()]
      return json.load(f)
  except FileNotFoundError:
    return None
