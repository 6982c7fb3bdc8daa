"""What a crashed pytest-xdist worker was doing, in the summary at the end of the run.

A worker that dies of a fatal signal (a segmentation fault in native code, an abort) is reported by xdist as
"worker 'gwN' crashed while running <test>", and faulthandler's dump goes to the worker's stderr: every
thread's stack, the crashing one somewhere in the middle, then the list of loaded extension modules. Where only
the end of the output is kept (a CI log), the crashing thread's stack is lost. Here each worker writes its
dump to a file of its own, and the controlling process prints the crashing thread's stack (the Python frames
that called into native code) in the run's summary, after the list of failures.

The controlling process names the folder (an environment variable the workers inherit); a run without
workers keeps pytest's own faulthandler on stderr.
"""

import faulthandler
import os
import pathlib
import tempfile

import pytest

ENV = "VALUEJAX_TEST_CRASH_DIR"
_open_files = []  # a worker's dump file stays open for the life of the process: faulthandler writes to its fd


def _in_worker(config) -> bool:
  return hasattr(config, "workerinput")  # what xdist gives a worker's config


@pytest.hookimpl(trylast=True)  # after pytest's own, which enables faulthandler on stderr
def pytest_configure(config):
  if not _in_worker(config):
    if ENV not in os.environ:
      os.environ[ENV] = tempfile.mkdtemp(prefix="valuejax-crash-")  # the workers, started later, inherit it
    return
  folder = os.environ.get(ENV)
  if not folder:
    return
  f = open(os.path.join(folder, f"{config.workerinput['workerid']}-{os.getpid()}.txt"), "w")
  _open_files.append(f)
  faulthandler.enable(file=f, all_threads=True)  # replaces pytest's own (stderr) for this worker


def crashing_thread(dump: str) -> str:
  """The fatal error's line and the crashing thread's stack from a faulthandler dump (all of it when the dump
  does not mark a current thread)."""
  lines = dump.splitlines()
  head = [ln for ln in lines[:3] if ln.startswith("Fatal Python error")]
  start = next((i for i, ln in enumerate(lines) if ln.startswith("Current thread")), None)
  if start is None:
    return dump.strip()
  end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
  return "\n".join(head + lines[start:end])


def pytest_terminal_summary(terminalreporter):
  folder = os.environ.get(ENV)
  if _in_worker(terminalreporter.config) or not folder or not os.path.isdir(folder):
    return
  for path in sorted(pathlib.Path(folder).glob("*.txt")):
    dump = path.read_text(errors="replace")
    if dump.strip():
      worker = path.stem.split("-")[0]
      terminalreporter.write_sep("=", f"worker {worker} crashed: its thread at the crash (faulthandler)")
      terminalreporter.write_line(crashing_thread(dump))
