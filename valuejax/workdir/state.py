"""The workdir's bookkeeping: which stages are done for which config, how long they took, what ran.

A stage is done when `<stage>/done.json` holds the fingerprint of the config entries it depends on and the
files it wrote still have the content hashes it recorded: an edited, truncated or replaced output is an
error that names the file, never silently reused. `config.json` is written when a stage succeeds, so a
command that fails (a bad flag, a missing earlier stage) leaves the workdir's description as it was.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import os
import subprocess
import time
from typing import Any, Iterator, Sequence

from absl import logging
import ml_collections as mlc

from valuejax import fileio as vio
from valuejax.errors import ValueJaxError
from valuejax.workdir.layout import CONFIG, STAGES, TIMINGS, done_file

# The config sections each stage's results depend on (cumulatively: locate also depends on record's).
_SECTIONS = {"record": ("method", "model", "dtype", "seed", "data", "record"), "locate": ("locate",),
             "intervene": ("intervene",), "report": ()}
# Entries that change how a stage runs but never what it computes.
_NO_EFFECT = ("record.checkpoint_every", "record.keep_checkpoints")
# Entries added after workdirs already existed: at these values they hash as if absent, so a finished run
# is not recomputed because its config predates them.
_ADDED = {"dtype": "float32", "record.hist_bins": "full", "record.budget_tokens": 0, "record.pairing_seed2": 0}


def is_writer() -> bool:
  """Only process 0 writes in a multi-process run; the others compute the same values and discard them."""
  import jax
  return jax.process_index() == 0


def fingerprint(config: mlc.ConfigDict, stage: str) -> str:
  """Hash of the config entries `stage` depends on (its own section and every earlier stage's)."""
  d = json.loads(config.to_json_best_effort(sort_keys=True))
  for key in _NO_EFFECT:
    section, _, leaf = key.partition(".")
    d.get(section, {}).pop(leaf, None)
  for key, value in _ADDED.items():
    section, _, leaf = key.rpartition(".")
    holder = d.get(section, {}) if section else d
    if isinstance(holder, dict) and holder.get(leaf) == value:
      holder.pop(leaf)
  picked = {}
  for s in STAGES[:STAGES.index(stage) + 1]:
    for section in _SECTIONS[s]:
      if section in d or section not in _ADDED:  # an added entry at its old value is not there at all
        picked[section] = d.get(section)
  return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


class Workdir:
  """Paths and bookkeeping of one run's folder."""

  def __init__(self, root: str, config: mlc.ConfigDict):
    self.root = os.path.abspath(root)
    self.config = config
    self.writer = is_writer()
    self.read_only = False  # set while `lock()` finds the workdir unwritable
    # sha256 per (file, mtime, size): a file read by several checks in one process (stats.npz by record's skip
    # and locate's prerequisite) is hashed once.
    self._digests: dict[tuple[str, int, int], str] = {}
    if self.writer:
      git_commit()  # the code this process started with, before a long first stage lets HEAD move
      try:
        os.makedirs(self.root, exist_ok=True)
      except OSError as e:
        raise ValueJaxError(f"cannot use the workdir: {e.strerror}", self.root,
                            "give --workdir a folder you can write (not a file)") from None

  @contextlib.contextmanager
  def lock(self) -> Iterator[None]:
    """`with wd.lock():` one run at a time in this workdir (process 0 holds it for every process). A workdir
    that cannot be written (read-only media) is read without a lock, and a stage that would have to run in
    it is an error (`should_skip`), so that rereading a finished run works and writes nothing."""
    if not self.writer:
      yield
      return
    from valuejax.workdir import lock
    with lock.hold(self.root, command_line()) as held:
      before, self.read_only = self.read_only, self.read_only or not held
      try:
        yield
      finally:
        self.read_only = before

  def path(self, *parts: str) -> str:
    return os.path.join(self.root, *parts)

  def write_config(self) -> None:
    """config.json: the resolved config, with the git commit of the code that ran it."""
    if not self.writer:
      return
    d = json.loads(self.config.to_json_best_effort(sort_keys=True))
    vio.write_json(self.path(CONFIG), {"config": d, "git_commit": git_commit(), "command": command_line(),
                                              "fingerprints": {s: fingerprint(self.config, s)
                                                               for s in STAGES[:3]}})

  def done(self, stage: str, verify: bool = True) -> dict[str, Any] | None:
    """The stage's done.json if it was completed for this config, else None. With `verify`, every output it
    recorded must still hash to the recorded digest; one that does not is an error naming the file."""
    try:
      with open(self.path(done_file(stage)), encoding="utf-8") as f:
        d = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
      return None
    if d.get("fingerprint") != fingerprint(self.config, stage):
      return None
    if "after" in d and d["after"] != self._outputs_of_previous(stage):
      logging.info("%s: the previous stage's outputs changed since it ran; it runs again", stage)
      return None
    for rel, digest in (d.get("outputs") or {}).items() if verify else ():
      found = self.digest(rel)
      if found != digest:
        what = "is missing" if found is None else "differs from what it wrote (edited, truncated or replaced)"
        raise ValueJaxError(f"an output of the {stage} stage {what}", self.path(rel),
                            f"rerun with --force to recompute the {stage} stage and the stages after it "
                            "(python -m launch.run --force ...), or restore the file")
    return d

  def mark_done(self, stage: str, seconds: float, outputs: Sequence[str] = (), **extra: Any) -> None:
    """Records the stage as done for this config, with the content hash of each output (relative paths),
    and describes the config that ran in config.json."""
    if self.writer:
      digests = {rel: d for rel in outputs if (d := self.digest(rel)) is not None}
      vio.write_json(self.path(done_file(stage)), {
          "fingerprint": fingerprint(self.config, stage), "seconds": round(seconds, 3),
          "finished": _now(), "outputs": digests, "after": self._outputs_of_previous(stage), **extra})
      self.write_config()

  def digest(self, rel: str) -> str | None:
    """sha256 of a workdir file (None when it is not there), computed once per version of the file."""
    path = self.path(rel)
    try:
      st = os.stat(path)
    except FileNotFoundError:
      return None
    if not os.path.isfile(path):
      return None
    key = (rel, st.st_mtime_ns, st.st_size)
    if key not in self._digests:
      self._digests[key] = file_digest(path)
    return self._digests[key]

  def _outputs_of_previous(self, stage: str) -> dict[str, str] | None:
    """The recorded output digests of the stage before `stage` (what `stage` was computed from)."""
    i = STAGES.index(stage)
    if i == 0:
      return None
    try:
      with open(self.path(done_file(STAGES[i - 1])), encoding="utf-8") as f:
        return json.load(f).get("outputs")
    except (FileNotFoundError, json.JSONDecodeError):
      return None

  def should_skip(self, stage: str, force: bool) -> bool:
    """True (and says so in the log) when the stage's outputs exist for this config."""
    done = self.done(stage, verify=not force)
    if done is not None and not force:
      logging.info("%s: skipped, outputs for this config exist in %s (finished %s, took %.1f s); --force "
                   "reruns it", stage, self.path(stage), done.get("finished"), done.get("seconds", 0.0))
      self._keep_timing(stage, done)
      return True
    if self.read_only:
      why = "--force asks for it" if done is not None else "its outputs for this config are not there"
      raise ValueJaxError(f"the {stage} stage has to run ({why}), but the workdir cannot be written", self.root,
                          "make the workdir writable, or copy it to a writable place and pass that --workdir")
    if done is not None:
      logging.info("%s: outputs exist for this config, rerunning because of --force", stage)
    return False

  def _keep_timing(self, stage: str, done: dict[str, Any]) -> None:
    """A skipped stage keeps the timing of the run that made its outputs; one is written only when it is
    missing (or belongs to another run), so that rereading a finished run writes nothing."""
    if not self.writer:
      return
    seconds = round(done.get("seconds", 0.0), 3)
    timings = self.timings()
    if isinstance(timings.get(stage), dict) and timings[stage].get("seconds") == seconds:
      return
    timings[stage] = {"seconds": seconds, "skipped": True, "at": done.get("finished")}
    vio.write_json(self.path(TIMINGS), timings)

  def add_timing(self, stage: str, seconds: float, **extra: Any) -> None:
    """timings.json: how long a stage that ran took (a skipped stage keeps the time of the run that made it)."""
    if not self.writer:
      return
    timings = self.timings()
    timings[stage] = {"seconds": round(seconds, 3), "skipped": False, "at": _now(),
                      "peak_rss_mib": peak_rss_mib(), **extra}
    vio.write_json(self.path(TIMINGS), timings)

  def timings(self) -> dict[str, Any]:
    try:
      with open(self.path(TIMINGS), encoding="utf-8") as f:
        return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
      return {}


def file_digest(path: str) -> str:
  """sha256 of a file's bytes (read in 4 MiB blocks)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      h.update(block)
  return h.hexdigest()


class Timer:
  """`with Timer() as t: ...; t.seconds`."""

  def __enter__(self) -> "Timer":
    self.start = time.perf_counter()
    self.seconds = 0.0
    return self

  def __exit__(self, *exc) -> None:
    self.seconds = time.perf_counter() - self.start


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
  """The commit of the code that ran (with '+dirty' when the tree has changes), or None outside git: read
  once per process, when its first workdir opens (before any stage runs), so that commits made while a
  long run goes on are not recorded as the code that ran it."""
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ("+dirty" if dirty else "")


def peak_rss_mib() -> float:
  """The process's peak resident memory so far (a stage's figure includes the stages before it)."""
  import resource
  import sys
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)  # bytes on macOS, KiB elsewhere


def command_line() -> str:
  """The command that ran, as `python -m launch.<stage> ...`, so that a results page can print it."""
  import shlex
  import sys
  if os.environ.get("VALUEJAX_COMMAND"):  # set by the `valuejax <command>` entry point
    return os.environ["VALUEJAX_COMMAND"]
  script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
  head = f"python -m launch.{script[:-3]}" if script.endswith(".py") else "python " + script
  return " ".join([head, *map(shlex.quote, sys.argv[1:])]).strip()


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")

