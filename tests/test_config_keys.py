"""Config entries are read as they are, each default written once (configs/), and a config that lacks an entry
its run reads is refused before anything loads, naming every missing entry."""

from __future__ import annotations

import ast
import importlib
import os
import re

import pytest

from tests.helpers import REPO, launch_in_process, refused
from valuejax.errors import ValueJaxError

SHIPPED = ("valuelocate", "valueexploration", "lape", "languages", "study", "study_ve")

# `.get("key", ...)` reads on a config section that remain in code converted elsewhere, by file: each reads an
# entry configs/common.py now declares, so its fallback is never taken; remove an entry when its read goes.
PENDING = {
    "valuejax/metrics/effects.py": {"sequential_h", "primary_test"},
    "valuejax/methods/design.py": {"controls_at", "primary_controls", "primary_test", "sequential_h"},
}


def _flat_keys(node, prefix: str = "") -> set[str]:
  import ml_collections as mlc
  out = set()
  for k, v in node.items():
    if isinstance(v, mlc.ConfigDict) and k != "sweep":
      out |= _flat_keys(v, f"{prefix}{k}.")
    else:
      out.add(prefix + k)
  return out


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_every_shipped_config_has_every_entry_its_run_reads(name, arg):
  from valuejax.validate import check_config, has_key, needed_keys
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  check_config(config)
  missing = [k for k in needed_keys(config) if not has_key(config, k)]
  assert not missing


def test_a_config_without_required_entries_names_each_of_them():
  from configs import valueexploration, valuelocate
  from valuejax.validate import check_config
  config = valuelocate.get_config("smoke")
  with config.unlocked():
    del config.locate["size"]
    del config.intervene["keep_prob"]
    del config.intervene["controls_at"]
  with pytest.raises(ValueJaxError) as err:
    check_config(config)
  text = str(err.value)
  for key in ("locate.size", "intervene.keep_prob", "intervene.controls_at"):
    assert key in text, text
  assert "the config file (--config)" in text and "configs/common.base_config" in text
  # The method's own entries too: ValueExploration's persona.
  config = valueexploration.get_config("smoke")
  with config.unlocked():
    del config.data["conflict_persona"]
  with pytest.raises(ValueJaxError, match="data.conflict_persona.*valueexploration"):
    check_config(config)


def test_the_parts_declare_their_entries_and_validate_merges_them():
  """A value out of a part's declared range is refused only for runs that use the part."""
  from configs import lape, valuelocate
  from valuejax.methods import EDITS, RULES
  from valuejax.validate import Range, check_config, declared_keys
  assert isinstance(declared_keys(EDITS.get("value_exploration"))["intervene.factor"], Range)
  assert "locate.presets" in declared_keys(RULES.get("vape")) and "locate.presets" not in declared_keys(
      RULES.get("valuelocate"))
  config = valuelocate.get_config("smoke")
  config.intervene.keep_prob = 0.0
  with pytest.raises(ValueJaxError, match="intervene.keep_prob"):
    check_config(config)
  config = lape.get_config("smoke")  # deactivation reads no keep_prob, so none is asked for
  assert "intervene.keep_prob" not in config.intervene
  check_config(config)


def test_a_missing_entry_stops_the_launcher_before_any_model_loads(tiny_model, tmp_path, monkeypatch):
  from launch import runtime

  def refuse(spec, dtype):
    raise AssertionError(f"the model {spec} was loaded")
  monkeypatch.setattr(runtime, "_load", refuse)
  path = tmp_path / "no_size.py"
  path.write_text("from configs import valuelocate\n\n\ndef get_config(arg=None):\n"
                  "  c = valuelocate.get_config(arg)\n  with c.unlocked():\n    del c.locate['size']\n  return c\n")
  wd = str(tmp_path / "w")
  proc = launch_in_process("launch.run", f"--config={path}:smoke", f"--workdir={wd}", f"--config.model={tiny_model}")
  refused(proc, "the config has no locate.size", "the config file")
  assert not os.path.exists(os.path.join(wd, "record"))


def test_the_library_reads_no_config_entry_with_a_fallback_of_its_own():
  """`<section>.get("key", ...)` on a config section, for a key a shipped config defines, would be a second
  default beside the config's: the library reads the entry itself."""
  defined = set()
  for name in SHIPPED:
    defined |= {k.rpartition(".")[2] for k in _flat_keys(importlib.import_module(f"configs.{name}").get_config())}
  # FLAGS.config.get("method") in launch/cli.py only forces a config file to load (and has no fallback).
  read = re.compile(r"(?<!FLAGS\.)\b(?:config\.(?:data|record|locate|intervene|mesh)|config|c|d|r|loc|section)"
                    r"\.get\(\"(\w+)\"")
  found = []
  for top in ("valuejax", "launch"):
    for root, _, files in os.walk(os.path.join(REPO, top)):
      for f in files:
        if not f.endswith(".py"):
          continue
        path = os.path.join(root, f)
        rel = os.path.relpath(path, REPO)
        if rel.startswith(("valuejax/report/", "valuejax/workdir/", "valuejax/engine/")):
          continue  # they read written files (config.json of any age, statistics), not a ConfigDict
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
          for key in read.findall(line):
            if key in defined and key not in PENDING.get(rel, ()):
              found.append(f"{rel}:{n}: {line.strip()}")
  assert not found, "\n".join(found)


def test_plan_types_sit_below_base_and_design():
  """methods/types.py and design.py import nothing from methods/base.py, so the two no longer import each other."""
  for name in ("types", "design"):
    tree = ast.parse(open(os.path.join(REPO, "valuejax", "methods", f"{name}.py"), encoding="utf-8").read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "valuejax.methods.base" not in imported and "valuejax.methods" not in imported, name
  from valuejax.methods import base, types
  assert base.Pair is types.Pair and base.Experiment is types.Experiment and base.UnitPlan is types.UnitPlan
