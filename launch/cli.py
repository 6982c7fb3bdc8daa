"""The flags every launcher shares (--config, --workdir, --force, --multihost) and their error boundary.

A bad flag, config key, config value or input file ends the program with one paragraph on stderr, exit 2.
"""

from __future__ import annotations

import ast
import errno
import difflib
import functools
import importlib.util
import os
import re
import sys
import traceback
from typing import Callable

from absl import app, flags, logging
import ml_collections as mlc
from ml_collections import config_flags

from valuejax.errors import ValueJaxError
from valuejax.validate import check_config, check_data, get_key  # noqa: F401 (the launchers' names)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # config files import `configs.common` whatever the working directory
  sys.path.insert(0, REPO)

DEFAULT_CONFIG = os.path.join(REPO, "configs", "valuelocate.py")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# OS errors the user fixes (space, permissions, a file where a folder should be), told in one paragraph.
_USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                   errno.EISDIR, errno.EEXIST}

FLAGS = flags.FLAGS

def _define_config_flag() -> None:
  # config_flags applies the --config.<key> overrides it finds in sys.argv while defining the flag, so
  # an unknown key fails here, before any main() runs.
  try:
    config_flags.DEFINE_config_file(
        "config", DEFAULT_CONFIG, "Config file, optionally with an argument: configs/valuelocate.py:smoke. "
        "Override entries with --config.<key>=<value>.", lock_config=True)
  except Exception as e:  # noqa: BLE001 - explained to the user below
    usage_exit(explain_flag_error(sys.argv, e))

flags.DEFINE_string("workdir", None, "Folder for every output of the run (statistics, neuron sets, "
                    "metrics, report.md); a rerun reuses what it holds.")
flags.DEFINE_bool("force", False, "Rerun stages even when their outputs exist for the same config.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU pods, multi-GPU "
                  "clusters); only process 0 writes outputs.")

def usage_exit(message: str) -> None:
  """Prints `message` as the one thing the user needs to read, and exits 2."""
  _close_progress_bars()
  sys.stderr.write(f"error: {message.strip()}\n")
  sys.stderr.flush()
  sys.exit(EXIT_USAGE)


def _close_progress_bars() -> None:
  """Ends an open progress bar's line, so that the message starts a line of its own."""
  if "tqdm" in sys.modules:
    from tqdm import tqdm
    for bar in list(getattr(tqdm, "_instances", ())):
      bar.close()


def run(main: Callable[[mlc.ConfigDict], None], extra_flags: tuple[str, ...] = (), preflight: bool = True) -> None:
  """`app.run(main)` behind the error boundary; `main` receives the checked config. With `preflight`, the data
  the config's run needs is checked too (launchers that only read a finished workdir pass False)."""
  app.run(functools.partial(_main, main, preflight),
          flags_parser=functools.partial(parse_flags, extra=extra_flags))


def parse_flags(argv: list[str], extra: tuple[str, ...] = ()) -> list[str]:
  try:
    rest = FLAGS(argv)
    FLAGS.config.get("method")  # a config file that failed to load raises only when first read
    return rest
  except Exception as e:  # noqa: BLE001 - whatever broke reading the flags or the config, the user can fix
    usage_exit(explain_flag_error(argv, e, extra))


def _main(main: Callable[[mlc.ConfigDict], None], preflight: bool, argv: list[str]) -> None:
  if len(argv) > 1:
    usage_exit(f"unexpected argument(s) {' '.join(argv[1:])!r}: every input is a flag, e.g. "
               "--config=configs/valuelocate.py --workdir=runs/valuelocate")
  try:
    config = FLAGS.config
    check_config(config)
    if preflight:
      check_data(config)
    if FLAGS.multihost:
      import jax
      jax.distributed.initialize()
      logging.info("joined a run of %d processes as process %d", jax.process_count(), jax.process_index())
    main(config)
  except ValueJaxError as e:
    usage_exit(str(e))
  except KeyboardInterrupt:
    _close_progress_bars()
    sys.stderr.write("interrupted. Finished stages and the record stage's last checkpoint are kept: rerun the "
                     "same command to resume.\n")
    sys.exit(EXIT_INTERRUPTED)
  except OSError as e:
    if e.errno not in _USER_OS_ERRORS:
      raise
    where = f" ({e.filename})" if e.filename else ""
    usage_exit(f"{e.strerror or e}{where}: the run stopped there. Free space or fix the permissions, then rerun "
               "the same command to resume.")
  except (AttributeError, KeyError) as e:
    if not _from_config_dict(e):
      raise
    usage_exit(f"the config has no entry {_missing_key(e)!r}, which this launcher needs "
               f"(config {FLAGS['config'].config_filename}). Compare it with {DEFAULT_CONFIG} and add "
               "the entry to the config file.")


def require_workdir() -> str:
  if not FLAGS.workdir:
    usage_exit("--workdir is required: the folder that holds the run's statistics, neuron sets, metrics "
               "and report.md (e.g. --workdir=runs/valuelocate).")
  return FLAGS.workdir


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
  if isinstance(exc, flags.UnrecognizedFlagError):
    known = ["--config", "--workdir", "--force", "--multihost", *extra]
    name = exc.flagname
    close = difflib.get_close_matches(name, [k[2:] for k in known], n=1)
    hint = f" Did you mean --{close[0]}?" if close else ""
    return (f"unknown flag --{name}.{hint} Valid flags: {', '.join(known)}; change a config entry with "
            "--config.<key>=<value> (e.g. --config.record.batch_size=8).")
  spec = _flag_value(argv, "config") or DEFAULT_CONFIG
  try:
    config = load_config(spec)
  except ValueJaxError as e:
    return f"cannot load the config {spec!r}: {e}"
  except Exception as e:  # noqa: BLE001 - a broken config file: say where it broke, not the whole traceback
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return (f"cannot load the config {spec!r}: {type(e).__name__}: {e} "
            f"({os.path.basename(frame.filename)}:{frame.lineno}).")
  for key, raw in _overrides(argv):
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


def _flag_value(argv: list[str], name: str) -> str | None:
  for i, a in enumerate(argv):
    if a.startswith(f"--{name}="):
      return a.split("=", 1)[1]
    if a == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _overrides(argv: list[str]) -> list[tuple[str, str | None]]:
  out = []
  for i, a in enumerate(argv):
    if a.startswith("--config."):
      key, sep, raw = a[len("--config."):].partition("=")
      if not sep:
        raw = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
      out.append((key, raw))
  return out


def _from_config_dict(e: BaseException) -> bool:
  tb = traceback.extract_tb(e.__traceback__)
  return bool(tb) and "ml_collections" in tb[-1].filename


def _missing_key(e: BaseException) -> str:
  text = str(e.args[0]) if e.args else str(e)
  found = re.search(r"[A-Za-z_][A-Za-z0-9_]*", text)
  return found.group(0) if found else text


_define_config_flag()
