"""The `valuejax` command: `valuejax <stage> --config=<name or path>[:arg] --workdir=... [--config.<key>=...]`.

Each subcommand is the launcher of the same name (`valuejax run` is `python -m launch.run`), with the same
absl flags. A config is a path, or the name of a shipped config (`valuejax run --config=valuelocate:smoke`).
Works from a checkout (its launch/ and configs/) and from a plain `pip install` (they are installed under
<prefix>/share/valuejax beside the shipped data).
"""

from __future__ import annotations

import os
import runpy
import shlex
import sys

SUBCOMMANDS = {
    "run": "record, locate, intervene and report in one process (and the config's positive control)",
    "record": "per-neuron statistics of the config's groups",
    "locate": "neuron sets from the statistics",
    "intervene": "edit the neurons; effects against size-matched random controls",
    "report": "report.md from a workdir",
    "sweep": "every run of a config's sweep (--list prints them)",
    "results": "a results page from several workdirs",
    "steer": "one pair's neurons steered, answers side by side",
    "plan": "bytes per device of a run from a model's config.json, and whether it fits",
}


def home() -> str:
  """The folder holding launch/ and configs/: the checkout this package sits in, else the install's share."""
  checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for root in (checkout, os.path.join(sys.prefix, "share", "valuejax"),
               os.path.join(sys.base_prefix, "share", "valuejax")):
    if os.path.isfile(os.path.join(root, "launch", "cli.py")) and os.path.isdir(os.path.join(root, "configs")):
      return root
  sys.stderr.write("error: valuejax's launchers are not installed (no launch/ beside the package or in "
                   f"{os.path.join(sys.prefix, 'share', 'valuejax')}); reinstall valuejax.\n")
  sys.exit(2)


def _config_arg(arg: str, root: str) -> str:
  """--config=<name>[:arg] (a shipped config) -> its path; a path is left as it is."""
  value = arg.split("=", 1)[1]
  name, sep, rest = value.partition(":")
  if os.path.exists(name) or name.endswith(".py") or os.sep in name:
    return arg
  path = os.path.join(root, "configs", f"{name}.py")
  return f"--config={path}{sep}{rest}" if os.path.isfile(path) else arg


def usage() -> str:
  lines = ["usage: valuejax <command> --config=<name or path>[:arg] --workdir=<folder> [--config.<key>=<value> ...]",
           "", "commands:"]
  lines += [f"  {k:<10} {v}" for k, v in SUBCOMMANDS.items()]
  configs = sorted(f[:-3] for f in os.listdir(os.path.join(home(), "configs")) if f.endswith(".py")
                   and f not in ("__init__.py", "common.py"))
  lines += ["", f"shipped configs: {', '.join(configs)} (e.g. --config=valuelocate:smoke)",
            "`valuejax <command> --help` lists a command's flags."]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    sys.exit(0 if argv else 2)
  sub, rest = argv[0], argv[1:]
  if sub not in SUBCOMMANDS:
    sys.stderr.write(f"error: unknown command {sub!r}; valuejax commands: {', '.join(SUBCOMMANDS)}\n")
    sys.exit(2)
  root = home()
  if root not in sys.path:
    sys.path.insert(0, root)
  # What the user typed, for config.json and results pages (runpy replaces argv[0] with the module's path).
  os.environ["VALUEJAX_COMMAND"] = " ".join(shlex.quote(a) for a in ["valuejax", sub, *rest])
  rest = [_config_arg(a, root) if a.startswith("--config=") else a for a in rest]
  sys.argv = [f"valuejax {sub}", *rest]
  runpy.run_module(f"launch.{sub}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
