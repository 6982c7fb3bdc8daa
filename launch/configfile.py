"""Config files and what is wrong with a command line: loading `path.py[:arg]` as --config does, and
explaining a bad flag, an unknown config key or a value of the wrong type in one paragraph (launch/cli.py
prints it and exits 2).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import re
import sys
import traceback

from absl import flags
import ml_collections as mlc

from valuejax.errors import ValueJaxError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # config files import `configs.common` whatever the working directory
  sys.path.insert(0, REPO)

DEFAULT_CONFIG = os.path.join(REPO, "configs", "valuelocate.py")


# -- configs ------------------------------------------------------------------------------------------

def load_config(spec: str) -> mlc.ConfigDict:
  """Loads `path.py[:arg]` the way --config does (used to explain errors and to expand sweeps)."""
  path, sep, arg = spec.partition(".py:")
  path = path + ".py" if sep else spec
  if not os.path.isfile(path):
    raise ValueJaxError(f"config file {path!r} does not exist", "--config",
                        f"pass a file such as {os.path.relpath(DEFAULT_CONFIG)} (relative to the current "
                        "folder or absolute)")
  module_spec = importlib.util.spec_from_file_location(f"_valuejax_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueJaxError("the config file defines no get_config(arg)", path,
                        "define get_config(arg=None) returning an ml_collections.ConfigDict")
  return module.get_config(arg) if sep else module.get_config()


# -- explaining flag errors ---------------------------------------------------------------------------

def explain_flag_error(argv: list[str], exc: Exception, extra: tuple[str, ...] = ()) -> str:
  """One paragraph saying what is wrong with the command line `argv` that raised `exc`, and what to do."""
  if isinstance(exc, flags.UnrecognizedFlagError):
    known = ["--config", "--workdir", "--force", "--multihost", *extra]
    name = exc.flagname
    close = difflib.get_close_matches(name, [k[2:] for k in known], n=1)
    hint = f" Did you mean --{close[0]}?" if close else ""
    return (f"unknown flag --{name}.{hint} Valid flags: {', '.join(known)}; change a config entry with "
            "--config.<key>=<value> (e.g. --config.record.batch_size=8).")
  spec = flag_value(argv, "config") or DEFAULT_CONFIG
  try:
    config = load_config(spec)
  except ValueJaxError as e:
    return f"cannot load the config {spec!r}: {e}"
  except Exception as e:  # noqa: BLE001 - a broken config file: say where it broke, not the whole traceback
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return (f"cannot load the config {spec!r}: {type(e).__name__}: {e} "
            f"({os.path.basename(frame.filename)}:{frame.lineno}).")
  for key, raw in overrides(argv):
    problem = explain_override(config, key, raw)
    if problem:
      return problem
  first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
  return f"bad command line: {first}"


def explain_override(config: mlc.ConfigDict, key: str, raw: str | None) -> str | None:
  """Why `--config.<key>=<raw>` cannot apply to `config`, or None if it can."""
  node, walked = config, []
  for part in key.split("."):
    if not isinstance(node, mlc.ConfigDict):
      return (f"--config.{key}: config entry {'.'.join(walked)} is a value ({node!r}), not a section with "
              "keys.")
    if part not in node:
      where = f" under '{'.'.join(walked)}'" if walked else ""
      valid = sorted(node.keys())
      close = difflib.get_close_matches(part, valid, n=1)
      hint = f" Did you mean '{'.'.join(walked + [close[0]])}'?" if close else ""
      return (f"--config.{key}: the config has no key '{'.'.join(walked + [part])}'.{hint} Valid keys"
              f"{where}: {', '.join(valid)}.")
    node = node[part]
    walked.append(part)
  if raw is None or isinstance(node, mlc.ConfigDict):
    return None
  expected = type(node).__name__
  try:
    if isinstance(node, bool):
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(raw)
    elif isinstance(node, (int, float)):
      type(node)(raw)
    elif isinstance(node, tuple):
      if not isinstance(ast.literal_eval(raw), (tuple, list)):
        raise ValueError(raw)
    elif isinstance(node, list):
      return (f"--config.{key}: list entries cannot be overridden on the command line; change the config "
              "file.")
  except (ValueError, SyntaxError):
    example = "'(0.5, 2.0)'" if isinstance(node, tuple) else repr(node)
    return (f"--config.{key}={raw}: expected a value of type {expected} (the config's value is {node!r}), e.g. "
            f"--config.{key}={example}.")
  return None


def flag_value(argv: list[str], name: str) -> str | None:
  """The value of --name=value or --name value in argv, or None."""
  for i, a in enumerate(argv):
    if a.startswith(f"--{name}="):
      return a.split("=", 1)[1]
    if a == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def overrides(argv: list[str]) -> list[tuple[str, str | None]]:
  """Every --config.<key>[=<value>] in argv as (key, raw value or None)."""
  out = []
  for i, a in enumerate(argv):
    if a.startswith("--config."):
      key, sep, raw = a[len("--config."):].partition("=")
      if not sep:
        raw = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
      out.append((key, raw))
  return out


def from_config_dict(e: BaseException) -> bool:
  """Whether an AttributeError/KeyError was raised by ml_collections (a config entry that is missing)."""
  tb = traceback.extract_tb(e.__traceback__)
  return bool(tb) and "ml_collections" in tb[-1].filename


def missing_key(e: BaseException) -> str:
  """The config entry an ml_collections error names."""
  text = str(e.args[0]) if e.args else str(e)
  found = re.search(r"[A-Za-z_][A-Za-z0-9_]*", text)
  return found.group(0) if found else text
