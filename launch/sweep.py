"""Sweeps: a config's `sweep` entry expanded as a cartesian product of runs, each in its own sub-workdir
named from the swept values; run in order here, or printed as command lines for a scheduler (--list).
"""

from __future__ import annotations

import itertools
import re
import shlex
import sys
from typing import Any

from absl import flags, logging
import ml_collections as mlc

from launch import cli, configfile
from valuejax.errors import ValueJaxError

flags.DEFINE_bool("list", False, "Print one launch.run command line per run of the sweep instead of running.")


def axes(config: mlc.ConfigDict) -> list[tuple[str, tuple[Any, ...]]]:
  """[(dotted config key, values)] of `config.sweep`, in declaration order, each key checked."""
  out = []

  def walk(node: mlc.ConfigDict, prefix: str) -> None:
    for k, v in node.items():
      key = f"{prefix}{k}"
      if isinstance(v, mlc.ConfigDict):
        walk(v, key + ".")
      elif isinstance(v, (tuple, list)) and len(v):
        out.append((key, tuple(v)))
      else:
        raise ValueJaxError(f"sweep entry {key} = {v!r} is not a non-empty tuple of values", "config.sweep",
                            f"write config.sweep.{key} = (value1, value2, ...)")

  walk(config.sweep, "")
  for key, _ in out:
    problem = configfile.explain_override(config, key, None)
    if problem or key.split(".")[0] == "sweep":
      raise ValueJaxError(f"sweep entry {key!r} names no config entry" + (f": {problem}" if problem else ""),
                          "config.sweep", "sweep keys mirror the config's keys, e.g. sweep.intervene.gamma")
  return out


def expand(config: mlc.ConfigDict) -> list[tuple[str, dict[str, Any]]]:
  """[(sub-workdir name, {dotted key: value})]: the cartesian product of the sweep's axes, first axis
  slowest. No sweep gives one run with no overrides."""
  ax = axes(config)
  runs = []
  for values in itertools.product(*[v for _, v in ax]):
    overrides = {k: _coerce(config, k, v) for (k, _), v in zip(ax, values)}
    runs.append((run_name(overrides), overrides))
  return runs


def _coerce(config: mlc.ConfigDict, key: str, value: Any) -> Any:
  # A tuple entry (e.g. intervene.gamma) swept over scalars takes each one as a 1-tuple.
  current = cli.get_key(config, key)
  return (value,) if isinstance(current, tuple) and not isinstance(value, (tuple, list)) else value


def run_name(overrides: dict[str, Any]) -> str:
  if not overrides:
    return "run"
  parts = []
  for k, v in overrides.items():
    v = ",".join(map(_fmt, v)) if isinstance(v, (tuple, list)) else _fmt(v)
    parts.append(f"{k.split('.')[-1]}={v}")
  return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", "_".join(parts))


def _fmt(v: Any) -> str:
  return f"{v:g}" if isinstance(v, float) else str(v)


def apply(config: mlc.ConfigDict, overrides: dict[str, Any]) -> mlc.ConfigDict:
  """A copy of `config` with the overrides set and the sweep removed, locked again."""
  out = mlc.ConfigDict(config.to_dict())
  out.sweep = mlc.ConfigDict()
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = out
    for p in parents:
      node = node[p]
    node[leaf] = value
  out.lock()
  return out


def command_lines(spec: str, workdir: str, runs: list[tuple[str, dict[str, Any]]],
                  extra: list[str]) -> list[str]:
  lines = []
  for name, overrides in runs:
    args = [sys.executable, "-m", "launch.run", f"--config={spec}", f"--workdir={workdir.rstrip('/')}/{name}",
            *extra, *[f"--config.{k}={_cli_value(v)}" for k, v in overrides.items()]]
    lines.append(" ".join(shlex.quote(a) for a in args))
  return lines


def _cli_value(v: Any) -> str:
  if isinstance(v, (tuple, list)):
    return "(" + ", ".join(repr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
  return str(v)


def main(config: mlc.ConfigDict) -> None:
  workdir = cli.require_workdir()
  runs = expand(config)
  if flags.FLAGS.list:
    spec = configfile.flag_value(sys.argv, "config") or configfile.DEFAULT_CONFIG
    extra = [a for a in sys.argv[1:] if a.startswith("--config.")]
    print("\n".join(command_lines(spec, workdir, runs, extra)))
    return
  from launch.run import run_pipeline
  for i, (name, overrides) in enumerate(runs):
    logging.info("sweep: run %d/%d %s (%s)", i + 1, len(runs), name, overrides)
    path = run_pipeline(apply(config, overrides), f"{workdir.rstrip('/')}/{name}", flags.FLAGS.force)
    if path:
      print(f"report: {path}")


CLI = cli.Launcher(main, extra_flags=("--list",))

if __name__ == "__main__":
  CLI.run()
