"""Nothing wrong without an error: a failed command leaves the workdir's description alone, one run holds a
workdir at a time, an edited or truncated output is detected (never silently reused), a damaged checkpoint is
never resumed, nonsense config values fail before anything runs, and a NaN activation stops the recording.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO, arrays, launch_in_process
from tests.helpers import launch as _launch, ok as _ok, refused as _refused, smoke_args as _smoke_args
from valuejax.errors import ValueJaxError

# Refusals (exit 2 at the launcher's error boundary, before any work) are checked in this process with
# launch_in_process; the runs that compute, resume or are killed start launcher processes.


def _copy(smoke_run, tmp_path) -> tuple[str, str]:
  """The model and a copy of the session's finished smoke run (record, locate, intervene, report) to damage."""
  return smoke_run.model, smoke_run.copy(str(tmp_path / "w"))


@pytest.fixture
def no_model_loads(monkeypatch) -> None:
  """Fails the test if a launcher run in this process loads a model."""
  from launch import runtime

  def refuse(spec, dtype):
    raise AssertionError(f"the model {spec} was loaded")
  monkeypatch.setattr(runtime, "_load", refuse)


@pytest.mark.slow
def test_a_failed_command_leaves_config_json_as_it_was(smoke_run, tmp_path):
  model, wd = _copy(smoke_run, tmp_path)
  before = open(os.path.join(wd, "config.json"), "rb").read()
  _refused(launch_in_process("launch.locate", *_smoke_args(model, wd), "--config.record.max_new_tokens=40"),
           "run the record stage first")
  assert open(os.path.join(wd, "config.json"), "rb").read() == before


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_second_run_refuses_a_held_workdir_and_a_dead_holders_lock_is_taken_over(smoke_run, tmp_path):
  model, wd = _copy(smoke_run, tmp_path)
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  lock = os.path.join(wd, ".lock")
  try:
    with open(lock, "w") as f:
      json.dump({"pid": holder.pid, "host": socket.gethostname(), "command": "python -m launch.run (test)",
                 "started": "now"}, f)
    _refused(launch_in_process("launch.run", *_smoke_args(model, wd)), "in use", str(holder.pid),
             socket.gethostname())
  finally:
    holder.kill()
    holder.wait()
  # The holder is gone: its lock is stale and taken over; the run finds every stage done.
  again = _ok(_launch("launch.run", *_smoke_args(model, wd)))
  assert "no longer running" in again.stderr and not os.path.exists(lock)


def test_the_lock_is_reentrant_in_one_process_and_released():
  from valuejax.workdir import lock
  import tempfile
  root = tempfile.mkdtemp()
  with lock.hold(root, "a"):
    assert json.load(open(os.path.join(root, ".lock")))["pid"] == os.getpid()
    with lock.hold(root, "b"):  # a stage inside launch.run
      pass
    assert os.path.exists(os.path.join(root, ".lock"))
  assert not os.path.exists(os.path.join(root, ".lock"))
  with open(os.path.join(root, ".lock"), "w") as f:
    json.dump({"pid": 1, "host": "another-machine", "started": "x"}, f)  # cannot be checked from here
  with pytest.raises(ValueJaxError, match="another-machine"):
    with lock.hold(root):
      pass


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["edit_set_json", "truncate_stats", "truncate_set_npz", "empty_summary"])
def test_a_damaged_output_is_an_error_naming_it_and_force_recovers(smoke_run, tmp_path, damage):
  model, wd = _copy(smoke_run, tmp_path)
  sets = json.load(open(os.path.join(wd, "locate", "summary.json")))
  name = next(iter(sets))
  if damage == "edit_set_json":
    path = os.path.join(wd, "locate", f"{name}.json")
    d = json.load(open(path))
    json.dump(d | {"edited": True}, open(path, "w"))
  elif damage in ("truncate_stats", "truncate_set_npz"):
    path = os.path.join(wd, "record", "stats.npz") if damage == "truncate_stats" else os.path.join(
        wd, "locate", f"{name}.npz")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
  else:
    path = os.path.join(wd, "locate", "summary.json")
    open(path, "w").close()
  before = open(os.path.join(wd, "intervene", "metrics.json"), "rb").read()
  _refused(launch_in_process("launch.run", *_smoke_args(model, wd)), os.path.relpath(path, wd), "--force")
  assert open(os.path.join(wd, "intervene", "metrics.json"), "rb").read() == before  # nothing rewritten
  if damage != "truncate_stats":
    _ok(_launch("launch.locate", *_smoke_args(model, wd), "--force"))  # the stage that wrote it, again
    _ok(_launch("launch.run", *_smoke_args(model, wd)))


def _state(seed: float) -> dict:
  return {"stats": {"s1": np.full((2, 3), seed), "count": np.arange(6).reshape(2, 3)}, "texts": {"a": "x"},
          "batches_done": int(seed)}


def _damage_step(directory: str, step: int) -> None:
  """Overwrite 16 bytes in the middle of the step's largest file (an array chunk)."""
  files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(directory, str(step))) for f in fs]
  path = max(files, key=os.path.getsize)
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.seek(size // 2)
    f.write(bytes(range(200, 216)))


def test_a_damaged_checkpoint_is_never_resumed(tmp_path):
  from valuejax.workdir.checkpoint import StatsCheckpointer
  d = str(tmp_path / "ckpt")
  ck = StatsCheckpointer(d, keep=3, fingerprint="f")
  ck.save(1, _state(1.0))
  ck.save(2, _state(2.0))
  ck.close()
  _damage_step(d, 2)
  ck = StatsCheckpointer(d, keep=3, fingerprint="f")
  step, state = ck.restore_latest()
  assert step == 1 and state["stats"]["s1"][0, 0] == 1.0  # the newest intact step
  _damage_step(d, 1)
  with pytest.raises(ValueJaxError, match="(?s)every record checkpoint is damaged.*--force"):
    StatsCheckpointer(d, keep=3, fingerprint="f").restore_latest()


def test_a_checkpoint_with_a_non_finite_sum_is_never_resumed(tmp_path):
  from valuejax.workdir.checkpoint import StatsCheckpointer
  d = str(tmp_path / "ckpt")
  ck = StatsCheckpointer(d, keep=3, fingerprint="f")
  bad = _state(1.0)
  bad["stats"]["s1"][1, 2] = np.nan
  ck.save(1, bad)
  with pytest.raises(ValueJaxError, match="non-finite"):
    ck.restore_latest()


def test_a_nan_activation_stops_recording_at_its_batch():
  from valuejax.engine.record import _check_finite
  from valuejax.engine.stats import NeuronStats
  st = NeuronStats.zeros(("up", "down"), 3, 4)
  _check_finite(st, "prompt", 0, 5, ["up/a"])
  st.s2[1, 2, 3] = np.inf
  with pytest.raises(ValueJaxError, match="batch 4 of 5.*group down, layer 2, neuron 3"):
    _check_finite(st, "generated", 3, 5, ["down/b"])


_NONSENSE = [
    ("--config.locate.threshold=-1", "locate.threshold"),
    ("--config.intervene.gamma=(1e400,)", "intervene.gamma"),
    ("--config.intervene.gamma=(nan,)", "intervene.gamma = (nan,) (not read as numbers)"),
    ("--config.intervene.keep_prob=0", "intervene.keep_prob"),
    ("--config.mesh.data=3", "mesh"),
    ("--config.intervene.eval_split=holdout", "no 'holdout' items"),
    ("--config.data.lang=fr", "'fr'"),
    ("--config.intervene.metric=text_likelihood", "held-out texts"),
    ("--config.data.framework=schwarz", "unknown framework 'schwarz'"),
    ("--config.method=probe", "unknown method 'probe'"),
    ("--config.intervene.alpha=1.5", "intervene.alpha"),
    ("--config.record.top_p=0", "record.top_p"),
    ("--config.record.batch_size=0", "record.batch_size"),
    ("--config.intervene.n_controls=-1", "intervene.n_controls"),
    ("--wrokdir=x", "Did you mean --workdir?"),
    ("--config.intervene.gama=2", "Did you mean 'intervene.gamma'?"),
    ("--config=configs/nope.py", "configs/nope.py"),
    ("--config=configs/valuelocate.py:smoke,itmes=3", "unknown config argument 'itmes'"),
    ("--config.locate.size=abc", "locate.size"),
    ("--config.model=/nonexistent/model", "/nonexistent/model"),
    ("--config.intervene.kind=steerin", "unknown edit kind 'steerin'"),
    ("--config.locate.rule=masks", "locate.masks"),
    ("--config.intervene.primary_gamma=3", "intervene.primary_gamma"),
    ("--config.locate.pairs=('openness_to_change:self_enhancement',)", "is not of the run's contrast 'reversed'"),
    ("--config.model=lab/no-such-model", "'lab/no-such-model' is not in the Hugging Face cache"),
]


def _nonsense_args(model: str, wd: str, flag: str) -> list[str]:
  return [a for a in _smoke_args(model, wd) if not (flag.startswith("--config=") and a.startswith("--config="))]


@pytest.mark.parametrize("flag,needle", _NONSENSE)
def test_nonsense_fails_before_anything_runs(tiny_model, tmp_path, flag, needle, monkeypatch):
  """In this process (launch_in_process): the message and exit 2 of the launcher's error boundary. Offline,
  with an empty Hugging Face cache, as a process started with HF_HUB_OFFLINE=1 and HF_HOME=<empty> would be."""
  from huggingface_hub import constants
  monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
  monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
  wd = str(tmp_path / "w")
  _refused(launch_in_process("launch.run", *_nonsense_args(tiny_model, wd, flag), flag), needle)
  assert not os.path.exists(os.path.join(wd, "record"))  # nothing recorded, nothing half written


@pytest.mark.subprocess
@pytest.mark.parametrize("flag,needle", [_NONSENSE[0], _NONSENSE[-1]])
def test_nonsense_in_a_process_exits_2_without_a_traceback(tiny_model, tmp_path, flag, needle, monkeypatch):
  """End to end, as a user meets it: a config value out of range, and a model id offline, each one paragraph
  on stderr and exit 2 from `python -m launch.run`."""
  wd = str(tmp_path / "w")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
  err = _refused(_launch("launch.run", *_nonsense_args(tiny_model, wd, flag), flag, process=True), needle)
  assert err.startswith("error: ")
  assert not os.path.exists(os.path.join(wd, "record"))


def test_a_workdir_path_that_is_a_file_is_named(tiny_model, tmp_path):
  path = str(tmp_path / "a_file")
  open(path, "w").write("x")
  _refused(launch_in_process("launch.run", *_smoke_args(tiny_model, path)), "cannot use the workdir", path)


def test_report_on_a_mistyped_workdir_creates_nothing(tmp_path):
  wd = str(tmp_path / "no_such_run")
  _refused(launch_in_process("launch.report", f"--workdir={wd}"), "not a valuejax workdir")
  assert not os.path.exists(wd)


def test_a_variant_keeps_the_arguments_given_beside_it():
  from configs import languages, valuelocate
  assert valuelocate.get_config("smoke,items=4").data.items_per_group == 4
  assert valuelocate.get_config("smoke").data.items_per_group == 2
  assert languages.get_config("demo,controls=39").intervene.n_controls == 39


def test_a_model_folder_without_a_tokenizer_is_named(tiny_model, tmp_path):
  folder = str(tmp_path / "no_tokenizer")
  shutil.copytree(tiny_model, folder, ignore=shutil.ignore_patterns("tokenizer*", "special_tokens*", "vocab*",
                                                                    "merges*", "chat_template*"))
  _refused(launch_in_process("launch.run", *_smoke_args(folder, str(tmp_path / "w"))), "no tokenizer files", folder)


@pytest.mark.slow
@pytest.mark.subprocess
def test_ctrl_c_prints_one_line_and_the_same_command_resumes(tiny_model, tmp_path):
  import signal
  wd = str(tmp_path / "w")
  args = [*_smoke_args(tiny_model, wd, "configs/valuelocate.py:smoke,items=12,tokens=24"),
          "--config.record.batch_size=2", "--config.record.checkpoint_every=1"]
  # The run gets Python's Ctrl-C handler even when this test runs as a background job, which inherits an
  # ignored SIGINT (set in the child's Python, not by a preexec_fn, which would fork this JAX process).
  start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "sys.argv[0] = 'launch'; runpy.run_module('launch.record', run_name='__main__', alter_sys=True)")
  proc = subprocess.Popen([sys.executable, "-c", start, *args], cwd=REPO, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
  seen = []
  for line in proc.stderr:
    seen.append(line)
    if "record: batch 2/" in line:
      proc.send_signal(signal.SIGINT)
      break
  rest = proc.communicate(timeout=300)[1]
  err = "".join(seen) + rest
  assert proc.returncode == 130 and "interrupted" in rest and "Traceback" not in err, err[-3000:]
  # The same command again (the recording stage's launcher: the other stages after it have nothing to resume).
  again = _ok(_launch("launch.record", *args))
  assert "resuming from the checkpoint" in again.stderr and os.path.isfile(os.path.join(wd, "record", "done.json"))


def test_a_config_json_of_other_weights_is_named(tmp_path):
  import valuejax
  from tests import tiny_models
  folder = tiny_models.save_word_level_llama(str(tmp_path / "m"), tiny_models.tiny_tokenizer(), 96)
  cfg = json.load(open(os.path.join(folder, "config.json")))
  json.dump(cfg | {"intermediate_size": 64}, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(ValueJaxError, match=r"(?s)weight layers/gate/kernel has shape \(3, 32, 48\), but config.json "
                                          r"implies \(3, 32, 64\).*config.json that belongs"):
    valuejax.load_model(folder)


def test_a_gguf_with_a_garbage_body_is_named_and_leaves_no_lock(tmp_path):
  import valuejax
  path = str(tmp_path / "broken.gguf")
  open(path, "wb").write(b"GGUF" + bytes([3, 0, 0, 0]) + np.random.default_rng(0).bytes(2000))
  cache = str(tmp_path / "cache")
  with pytest.raises(ValueJaxError, match="(?s)broken.gguf: the GGUF file does not parse.*download it again"):
    valuejax.load_model(path, cache_dir=cache)
  assert os.listdir(cache) == []  # no half-converted entry, no .lock


def test_ctrl_c_during_a_checkpoint_write_waits_for_the_step():
  import signal
  import time
  from valuejax.workdir.checkpoint import _sigint_deferred
  done = []
  # A test run started as a background job inherits an ignored SIGINT: give this process Python's handler.
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    with pytest.raises(KeyboardInterrupt):
      with _sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        done.append("written")  # the step completes before the interrupt is raised
    assert done == ["written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
  finally:
    signal.signal(signal.SIGINT, previous)


def test_a_neuron_set_with_an_index_out_of_range_names_its_file(tmp_path):
  from valuejax.locate.neuron_set import GroupNeurons, NeuronSet
  mask = np.zeros((2, 5), bool)
  mask[1, 3] = True
  path = str(tmp_path / "s.json")
  NeuronSet({"a": GroupNeurons.from_mask(mask)}).save_json(path)
  d = json.load(open(path))
  d["groups"]["a"]["indices"][1] = [7]  # past the 5 neurons of a layer
  json.dump(d, open(path, "w"))
  with pytest.raises(ValueJaxError, match=r"s\.json: `index` has values outside \[0, 5\)"):
    NeuronSet.load(path)


# -- read-only media, a full disk and kill -9 inside a checkpoint write -------------------------------------

def _python_then(prelude: str, module: str, *args: str) -> list[str]:
  """The command that runs `prelude` (Python code) and then `python -m module args` in the same process."""
  run = (f"\nimport runpy, sys\nsys.argv[0] = {module!r}\n"
         f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
  return [sys.executable, "-c", prelude + run, *args]


def _run_python_then(prelude: str, module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run(_python_then(prelude, module, *args), cwd=REPO, capture_output=True, text=True,
                        timeout=600, env=dict(os.environ, PYTHONUNBUFFERED="1"))


# Read-only media for a process whose permissions are not checked (root): every write under ROOT fails with
# EROFS, as the kernel's would (an audit hook runs before each open for writing, rename, remove, mkdir ...).
_READ_ONLY_MEDIA = '''
import errno, os, sys
ROOT = {root!r}
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_CHANGES = {{"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.utime", "os.truncate",
            "os.link", "os.symlink", "shutil.rmtree", "shutil.copyfile", "shutil.move"}}

def _inside(p):
  if not isinstance(p, (str, bytes, os.PathLike)):
    return False
  p = os.path.abspath(os.fsdecode(p))
  return p == ROOT or p.startswith(ROOT + os.sep)

def _read_only_media(event, args):
  if event == "open":
    hit = isinstance(args[2], int) and args[2] & _WRITE and _inside(args[0])
  elif event in _CHANGES:
    hit = any(_inside(a) for a in args[:2])
  else:
    return
  if hit:
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(args[0]))

sys.addaudithook(_read_only_media)
'''


def _snapshot(root: str) -> dict[str, tuple]:
  """Every file and folder under `root`: its modification time and, for a file, its bytes' digest."""
  import hashlib
  out = {}
  for r, dirs, files in os.walk(root):
    for name in dirs + files:
      p = os.path.join(r, name)
      digest = hashlib.sha256(open(p, "rb").read()).hexdigest() if name in files else None
      out[os.path.relpath(p, root)] = (os.stat(p).st_mtime_ns, digest)
  return out


def _chmod_tree(root: str, writable: bool) -> None:
  import stat
  for r, dirs, files in os.walk(root):
    for p in [r] + [os.path.join(r, f) for f in files]:
      mode = os.stat(p).st_mode
      os.chmod(p, mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.mark.slow
@pytest.mark.subprocess
def test_rereading_a_finished_run_on_read_only_media_writes_nothing(smoke_run, tmp_path):
  model, wd = _copy(smoke_run, tmp_path)
  before = _snapshot(wd)
  # chmod -R a-w is read-only media for a user; root writes through permissions, so there every write under
  # the workdir fails as on a read-only mount instead.
  as_root = os.geteuid() == 0
  prelude = _READ_ONLY_MEDIA.format(root=os.path.abspath(wd)) if as_root else ""
  if not as_root:
    _chmod_tree(wd, writable=False)
  try:
    for module, args in (("launch.run", _smoke_args(model, wd)), ("launch.report", [f"--workdir={wd}"])):
      proc = _ok(_run_python_then(prelude, module, *args))
      assert "Traceback" not in proc.stderr and "cannot be written: reading it without a lock" in proc.stderr
      assert f"report: {os.path.join(wd, 'report.md')}" in proc.stdout
    # A stage that would have to run says so before it computes anything.
    _refused(_run_python_then(prelude, "launch.run", *_smoke_args(model, wd), "--config.intervene.n_controls=1"),
             "the intervene stage has to run", "the workdir cannot be written", "writable")
    after = _snapshot(wd)
  finally:
    if not as_root:
      _chmod_tree(wd, writable=True)
  assert after == before  # not one file written, replaced or touched


@pytest.mark.slow
def test_rereading_a_finished_run_writes_nothing_when_it_can(smoke_run, tmp_path):
  model, wd = _copy(smoke_run, tmp_path)
  before = _snapshot(wd)
  rerun = _ok(_launch("launch.run", *_smoke_args(model, wd)))
  assert all(f"{stage}: skipped" in rerun.stderr for stage in ("record", "locate", "intervene"))
  _ok(_launch("launch.report", f"--workdir={wd}"))
  assert _snapshot(wd) == before  # timings.json, config.json, report.md and the figures as they were


# Inside orbax's write of an array of checkpoint step STEP, once the step's temporary folder exists and before
# the step is committed: "pause" writes the array, leaves a marker file and waits to be killed; "enospc" fails
# as tensorstore does when the disk is full (before writing, so that no write of it is left in flight).
_INSIDE_CHECKPOINT_WRITE = '''
import os, time
from orbax.checkpoint._src.serialization import type_handlers
STEP, ACTION, MARKER = {step!r}, {action!r}, {marker!r}
_write = type_handlers.NumpyHandler._open_and_write

async def _open_and_write(self, value, tspec, ts_context):
  path = tspec["kvstore"]["base"]["path"]
  step_tmp = path[:path.find(".orbax-checkpoint-tmp") + len(".orbax-checkpoint-tmp")]
  if os.path.basename(step_tmp) != "%d.orbax-checkpoint-tmp" % STEP:
    return await _write(self, value, tspec, ts_context)
  if not os.path.isdir(step_tmp):
    raise AssertionError("the step's temporary folder does not exist yet: " + step_tmp)
  if ACTION == "pause":
    await _write(self, value, tspec, ts_context)
    open(MARKER, "w").close()
    time.sleep(600)
  raise ValueError('RESOURCE_EXHAUSTED: Error writing "s1" in OCDBT database at local file "%s": Failed to '
                   "write 968258 bytes to file 14: No space left on device [os_error_code='28']" % path)

type_handlers.NumpyHandler._open_and_write = _open_and_write
'''


def _record_args(model: str) -> list[str]:
  # 16 prompts (2 of each of the 8 groups) in 8 batches, a checkpoint after each.
  return ["--config=configs/valuelocate.py:smoke", f"--config.model={model}", "--config.record.batch_size=2",
          "--config.record.checkpoint_every=1"]


@pytest.fixture(scope="module")
def whole_record(tiny_model, tmp_path_factory):
  """The statistics of an uninterrupted record stage, to compare a resumed one with."""
  wd = str(tmp_path_factory.mktemp("whole") / "w")
  _ok(_launch("launch.record", *_record_args(tiny_model), f"--workdir={wd}"))
  return tiny_model, wd


def _same_record(a: str, b: str) -> None:
  for name in ("stats.npz", "prompt_stats.npz"):
    x, y = arrays(os.path.join(a, "record", name)), arrays(os.path.join(b, "record", name))
    assert x.keys() == y.keys()
    for k in x:
      assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), (name, k)
  assert open(os.path.join(a, "record", "texts.jsonl")).read() == open(os.path.join(b, "record", "texts.jsonl")).read()


def _checkpoint_folder(wd: str) -> tuple[list[int], list[str]]:
  """(complete steps, unfinished temporary folders) of the record checkpoints."""
  names = os.listdir(os.path.join(wd, "record", "checkpoints"))
  return sorted(int(n) for n in names if n.isdigit()), [n for n in names if "orbax-checkpoint-tmp" in n]


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_full_disk_while_a_checkpoint_is_written_is_one_paragraph_and_the_run_resumes(whole_record, tmp_path):
  import re
  model, whole = whole_record
  wd = str(tmp_path / "w")
  full = _INSIDE_CHECKPOINT_WRITE.format(step=3, action="enospc", marker="")
  err = _refused(_run_python_then(full, "launch.record", *_record_args(model), f"--workdir={wd}"),
                 "cannot write the record checkpoint after batch 3: No space left on device",
                 os.path.join(wd, "record", "checkpoints"), "free space", "rerun the same command",
                 "resumes after batch 2")
  assert not re.search(r"^E\d{4} ", err, re.M), err[-3000:]  # no error log (orbax logs one per thread)
  assert _checkpoint_folder(wd) == ([1, 2], [])  # the unfinished step's temporary folder is gone
  assert not os.path.exists(os.path.join(wd, "record", "done.json")) and not os.path.exists(
      os.path.join(wd, ".lock"))
  resumed = _ok(_launch("launch.record", *_record_args(model), f"--workdir={wd}"))
  assert "record: resuming from the checkpoint after batch 2 of 8" in resumed.stderr
  _same_record(whole, wd)


def test_a_full_disk_in_a_checkpoint_write_leaves_the_last_complete_step(tmp_path, monkeypatch):
  import errno
  from orbax.checkpoint._src.serialization import type_handlers
  from valuejax.workdir.checkpoint import StatsCheckpointer
  unfinished = []

  async def full(self, value, tspec, ts_context):  # a Python-level write failing, as a full disk fails it
    path = tspec["kvstore"]["base"]["path"]
    step_tmp = path[:path.find(".orbax-checkpoint-tmp") + len(".orbax-checkpoint-tmp")]
    unfinished.append((os.path.basename(step_tmp), os.path.isdir(step_tmp)))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

  d = str(tmp_path / "ckpt")
  ck = StatsCheckpointer(d, keep=3, fingerprint="f")
  ck.save(1, _state(1.0))
  monkeypatch.setattr(type_handlers.NumpyHandler, "_open_and_write", full)
  with pytest.raises(ValueJaxError, match="(?s)after batch 2: No space left on device.*resumes after batch 1"):
    ck.save(2, _state(2.0))
  monkeypatch.undo()
  assert unfinished[0] == ("2.orbax-checkpoint-tmp", True)  # the failure came with step 2's folder written
  assert sorted(os.listdir(d)) == ["1"]  # and the folder is gone
  assert StatsCheckpointer(d, keep=3, fingerprint="f").restore_latest()[0] == 1


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_inside_a_checkpoint_write_resumes_bit_identical(whole_record, tmp_path):
  import signal
  import time
  model, whole = whole_record
  wd, marker = str(tmp_path / "w"), str(tmp_path / "inside_the_write")
  pause = _INSIDE_CHECKPOINT_WRITE.format(step=3, action="pause", marker=marker)
  proc = subprocess.Popen(_python_then(pause, "launch.record", *_record_args(model), f"--workdir={wd}"), cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 300
    while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
      time.sleep(0.02)
    assert os.path.exists(marker), f"the run never reached the write of step 3 (exit {proc.poll()})"
  finally:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
  steps, unfinished = _checkpoint_folder(wd)
  assert steps == [1, 2] and [n[:2] for n in unfinished] == ["3."]  # killed inside the write of step 3
  resumed = _ok(_launch("launch.record", *_record_args(model), f"--workdir={wd}"))
  assert "no longer running; taking it over" in resumed.stderr  # the killed run's lock
  assert "record: resuming from the checkpoint after batch 2 of 8" in resumed.stderr
  _same_record(whole, wd)
  assert _checkpoint_folder(wd)[1] == []


def test_an_overlong_text_in_an_item_file_names_its_line_before_the_model_loads(tiny_model, tmp_path, no_model_loads):
  folder = str(tmp_path / "framework")
  shutil.copytree(os.path.join(REPO, "data", "schwartz"), folder)
  path = os.path.join(folder, "value_descriptions.jsonl")
  lines = open(path, encoding="utf-8").read().splitlines()
  item = json.loads(lines[2])
  lines[2] = json.dumps(item | {"text": "I would rather work out my own answer. " * 130_000})  # about 5 MB
  open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
  wd = str(tmp_path / "w")
  err = _refused(launch_in_process("launch.run", *_smoke_args(tiny_model, wd), f"--config.data.framework={folder}"),
                 f"{path}:3: field 'text' is 5,070,000 characters long", "shorten it")
  assert "max_prompt_tokens" not in err  # and before any model loads (no_model_loads)
  assert not os.path.exists(os.path.join(wd, "record"))


def test_a_prompt_over_the_token_limit_names_the_item_and_the_data_key(tiny_model, tmp_path):
  folder = str(tmp_path / "framework")
  shutil.copytree(os.path.join(REPO, "data", "schwartz"), folder)
  path = os.path.join(folder, "value_descriptions.jsonl")
  lines = open(path, encoding="utf-8").read().splitlines()
  item = json.loads(lines[0])  # recorded by the smoke config
  lines[0] = json.dumps(item | {"text": "I would rather work out my own answer " * 300})  # 2,400 words
  open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
  wd = str(tmp_path / "w")
  err = _refused(launch_in_process("launch.record", *_smoke_args(tiny_model, wd), f"--config.data.framework={folder}"),
                 f"data.framework = '{folder}'", f"item '{item['id']}+", "at most 2048 tokens",
                 "shorten that item's text", "set data.framework")
  assert "max_prompt_tokens" not in err
  assert not os.path.exists(os.path.join(wd, "record", "done.json"))


def test_entries_added_to_the_config_at_their_old_values_keep_finished_runs_valid():
  """A config key added later (dtype, record.hist_bins) at the value runs had before it existed hashes as if
  absent, so a finished run is not recomputed; any other value (bfloat16 weights) reruns record."""
  from configs import common
  from valuejax.workdir.state import fingerprint
  c = common.base_config("valuelocate")
  old = common.base_config("valuelocate")
  with old.unlocked():
    del old["dtype"]
    del old.record["hist_bins"]
  assert fingerprint(c, "record") == fingerprint(old, "record")
  c.dtype = "bfloat16"
  assert fingerprint(c, "record") != fingerprint(old, "record")
  c.dtype, c.record.hist_bins = "float32", "compact"
  assert fingerprint(c, "record") != fingerprint(old, "record")


def test_the_recorded_commit_is_the_one_the_process_started_with(monkeypatch, tmp_path):
  """config.json names the code that ran: a commit made in the checkout while a long run's first stage goes
  on (config.json is first written when that stage ends) is not recorded as that run's code."""
  import subprocess as sp

  import ml_collections
  from valuejax.workdir import state
  head = ["a" * 40]

  def fake_run(cmd, **kw):
    out = head[0] if cmd[:2] == ["git", "rev-parse"] else ""
    return sp.CompletedProcess(cmd, 0, stdout=out + "\n", stderr="")

  state.git_commit.cache_clear()
  monkeypatch.setattr(state.subprocess, "run", fake_run)
  try:
    wd = state.Workdir(str(tmp_path / "run"), ml_collections.ConfigDict({"model": "m"}))  # the run starts
    head[0] = "b" * 40  # a commit lands while its first stage runs
    wd.write_config()  # the first stage ends
    assert json.loads((tmp_path / "run" / "config.json").read_text())["git_commit"] == "a" * 40
  finally:
    state.git_commit.cache_clear()
