"""The flags every launcher shares (--config, --workdir, --force, --multihost) and their error boundary.

A bad flag, config key, config value or input file ends the program with one paragraph on stderr, exit 2
(the paragraph is written by launch/configfile.py).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import sys
from typing import Callable

from absl import app, flags, logging
from ml_collections import config_flags

from launch.configfile import DEFAULT_CONFIG, explain_flag_error, from_config_dict, missing_key
from valuejax.errors import ValueJaxError
from valuejax.validate import check_config, check_data, get_key  # noqa: F401 (the launchers' names)

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


@dataclasses.dataclass(frozen=True)
class Launcher:
  """A launcher's entry point: its `main`, the flags it defines beside the shared ones (`extra_flags`, named in
  the hint for a mistyped flag), whether the data its config's run needs is checked first (`preflight`; False
  for launchers that only read a finished workdir), and whether `main` takes the checked config at all
  (`config`; False for launch.results, which reads only its own flags). Each launch/*.py defines one as `CLI`
  and runs `CLI.run()`; tests run the same object in-process (tests/helpers.py)."""
  main: Callable[..., None]
  extra_flags: tuple[str, ...] = ()
  preflight: bool = True
  config: bool = True

  def run(self) -> None:
    """`app.run` behind the error boundary."""
    app.run(self.boundary, flags_parser=functools.partial(parse_flags, extra=self.extra_flags))

  def boundary(self, argv: list[str]) -> None:
    """`main` behind the error boundary, given the argv that remains after the flags."""
    _main(self.main, self.preflight, argv, self.config)


def parse_flags(argv: list[str], extra: tuple[str, ...] = ()) -> list[str]:
  try:
    rest = FLAGS(argv)
    FLAGS.config.get("method")  # a config file that failed to load raises only when first read
    return rest
  except Exception as e:  # noqa: BLE001 - whatever broke reading the flags or the config, the user can fix
    usage_exit(explain_flag_error(argv, e, extra))


def _main(main: Callable[..., None], preflight: bool, argv: list[str], takes_config: bool = True) -> None:
  if len(argv) > 1:
    example = ", e.g. --config=configs/valuelocate.py --workdir=runs/valuelocate" if takes_config else " (see --help)"
    usage_exit(f"unexpected argument(s) {' '.join(argv[1:])!r}: every input is a flag{example}")
  try:
    if not takes_config:
      main()
      return
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
    if not from_config_dict(e):
      raise
    usage_exit(f"the config has no entry {missing_key(e)!r}, which this launcher needs "
               f"(config {FLAGS['config'].config_filename}). Compare it with {DEFAULT_CONFIG} and add "
               "the entry to the config file.")


def require_workdir() -> str:
  if not FLAGS.workdir:
    usage_exit("--workdir is required: the folder that holds the run's statistics, neuron sets, metrics "
               "and report.md (e.g. --workdir=runs/valuelocate).")
  return FLAGS.workdir


_define_config_flag()
