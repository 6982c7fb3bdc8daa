"""docs/extending.md as a user reads it: its code blocks, written into a module of the user's own, run through
the launchers by `module:name` (a method, a locator rule, an edit kind and a metric with its own report
section) with no change to valuejax."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests import helpers

DOC = os.path.join(helpers.REPO, "docs", "extending.md")


def _blocks(lang: str) -> list[str]:
  with open(DOC, encoding="utf-8") as f:
    return re.findall(rf"```{lang}\n(.*?)```", f.read(), re.S)


def test_the_pages_python_is_one_module_that_registers_its_metric(tmp_path, monkeypatch):
  (tmp_path / "mylab_page.py").write_text("\n\n".join(_blocks("python")), encoding="utf-8")
  monkeypatch.syspath_prepend(str(tmp_path))
  from valuejax.methods import EDITS, METHODS, RULES
  from valuejax.metrics import METRICS
  for registry in (EDITS, METHODS, RULES, METRICS):  # the page's names leave the registries after the test
    registry.names()  # the built-in ones first, so that the restored registry keeps them
    monkeypatch.setattr(registry, "_items", dict(registry._items))
  method = METHODS.get("mylab_page:FirstPairOnly")
  assert method.name == "first_pair_only"
  assert RULES.get("mylab_page:six_per_group").__name__ == "six_per_group"
  assert EDITS.get("mylab_page:deactivate_plus").__name__ == "deactivate_plus"
  assert METRICS.get("mylab_page:aligned_action_logprob").name == "aligned_action_logprob"


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_pages_command_runs_its_pieces_through_the_launchers(tiny_model, tmp_path):
  (tmp_path / "mylab.py").write_text("\n\n".join(_blocks("python")), encoding="utf-8")
  (command,) = _blocks("bash")
  argv = shlex.split(command.replace("\\\n", " "))
  assert argv[:3] == ["PYTHONPATH=.", "python", "-m"]
  wd = str(tmp_path / "mine")
  args = [a.replace("--workdir=runs/mine", f"--workdir={wd}") for a in argv[4:]]
  args += [f"--config.model={tiny_model}"]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), helpers.REPO]), PYTHONUNBUFFERED="1")
  proc = subprocess.run([sys.executable, "-m", argv[3], *args], cwd=helpers.REPO, env=env, capture_output=True,
                        text=True, timeout=600)
  helpers.ok(proc)
  with open(os.path.join(wd, "locate", "summary.json"), encoding="utf-8") as f:
    sets = json.load(f)
  (name,) = sets  # the first pair only
  assert all(g["count"] == 6 for g in sets[name]["groups"].values())
  with open(os.path.join(wd, "intervene", "metrics.json"), encoding="utf-8") as f:
    metrics = json.load(f)
  (unit,) = metrics["units"]
  (effect,) = unit["effects"]
  assert effect["edit"] == "deactivate plus" and effect["expected"] == "less"
  with open(os.path.join(wd, "report.md"), encoding="utf-8") as f:
    report = f.read()
  assert "## The aligned action's likelihood" in report and "1 located edits scored" in report
