"""The README as a user reads it: its tour runs as written on the real default model, and it carries exactly the
two set-up commands (`make demo`, `make test`) that `.ci/run` relies on."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    return f.read()


def _section(text: str, heading: str) -> str:
  start = text.index(f"\n## {heading}\n")
  end = text.find("\n## ", start + 1)
  return text[start:end if end > 0 else None]


def test_the_readme_has_exactly_the_two_set_up_commands():
  setup = _section(_readme(), "Set-up: two commands")
  (block,) = re.findall(r"```bash\n(.*?)```", setup, re.S)
  commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
  assert commands == ["make demo", "make test"]
  with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
    ci = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
  assert "make test" in ci


@pytest.mark.real_model
@pytest.mark.slow
def test_the_tour_runs_as_written(real_cache, monkeypatch):
  monkeypatch.setenv("VALUEJAX_CACHE", real_cache)
  (code,) = re.findall(r"```python\n(.*?)```", _section(_readme(), "A tour in code"), re.S)
  scope: dict = {}
  exec(compile(code, "README.md (A tour in code)", "exec"), scope)
  cfg = scope["cfg"]
  b, t = scope["ids"].shape
  assert scope["acts"].shape == (cfg.num_layers, b, t, cfg.intermediate_size)
  assert scope["p"].shape == (2, cfg.num_layers, cfg.intermediate_size)
  assert np.all((scope["p"] >= 0) & (scope["p"] <= 1))
  # 0.5% of the model's neurons per group, and deactivating them changes the logits.
  ns = scope["neurons"]
  assert ns.mask("conservation").sum() == round(0.005 * cfg.num_layers * cfg.intermediate_size)
  assert not np.allclose(np.asarray(scope["edited_logits"]), np.asarray(scope["logits"]))
