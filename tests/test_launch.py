"""Launchers end to end on a tiny random llama: every stage, skipping, exact resume after kill -9, sweeps,
and the one-paragraph exit-2 errors for bad flags and config entries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import REPO, launch_in_process
from tests.helpers import arrays as _arrays, launch as _launch, ok as _ok, smoke_args as _smoke_args


@pytest.mark.slow
def test_stages_alone_then_run_skips_them(smoke_run, tmp_path):
  """The session's smoke run is made by the four stage launchers, one after the other (tests/conftest.py):
  each wrote its outputs, and launch.run on a copy of that workdir finds every stage done."""
  wd = smoke_run.workdir
  assert "skipped" not in smoke_run.stderr and f"report: {os.path.join(wd, 'report.md')}" in smoke_run.stdout
  for f in ("config.json", "record/stats.npz", "record/texts.jsonl", "locate/summary.json",
            "intervene/metrics.json", "intervene/metrics.csv", "intervene/effects.csv",
            "intervene/examples.jsonl", "report.md", "report/effects.png", "report/neurons_per_layer.png",
            "timings.json"):
    assert os.path.isfile(os.path.join(wd, f)), f
  sets = json.load(open(os.path.join(wd, "locate", "summary.json")))
  # The authors' contrast by default: each value against its own reversed descriptions.
  assert set(sets) == {f"{a}_vs_{a}_reversed" for a in ("openness_to_change", "conservation", "self_enhancement",
                                                         "self_transcendence")}
  metrics = json.load(open(os.path.join(wd, "intervene", "metrics.json")))
  assert metrics["schema_version"] == 2
  effects = [e for p in metrics["units"] for e in p["effects"]]
  assert {e["params"]["mode"] for e in effects} == {"enhance", "reverse"}
  assert all(len(e["control_effects"]) == 2 for e in effects if e["params"]["gamma"] == 2.0)
  header = open(os.path.join(wd, "intervene", "metrics.csv")).readline().strip().split(",")
  assert header[:3] == ["pair", "edit", "role"] and header[-2:] == ["item_id", "score"]
  report = open(os.path.join(wd, "report.md")).read()
  for section in ("## Result", "## What was run", "## Located neurons", "## Effect of each edit",
                  "## Answers before and after editing", "## Time per stage"):
    assert section in report
  assert "- Contrast: each value against its own reversed descriptions" in report
  wd = smoke_run.copy(str(tmp_path / "w"))
  args = _smoke_args(smoke_run.model, wd)
  rerun = _ok(_launch("launch.run", *args))
  for stage in ("record", "locate", "intervene"):
    assert f"{stage}: skipped" in rerun.stderr
  assert f"report: {os.path.join(wd, 'report.md')}" in rerun.stdout
  # A changed entry reruns the stages that depend on it, and only those.
  changed = _ok(_launch("launch.run", *args, "--config.intervene.n_controls=1"))
  assert "record: skipped" in changed.stderr and "locate: skipped" in changed.stderr
  assert "intervene: skipped" not in changed.stderr


@pytest.mark.slow
def test_a_pod_shaped_config_runs_end_to_end(tiny_model, tmp_path):
  """What a 70B run on a pod sets, on 8 CPU devices: bfloat16 weights, the stacked layout split FSDP over a
  4 x 2 mesh, compact histograms and the v95 steer value; statistics stay float32 and finite."""
  from valuejax.engine.histogram import COMPACT_EDGES
  wd = str(tmp_path / "w")
  proc = _ok(_launch("launch.run", *_smoke_args(tiny_model, wd), "--config.dtype=bfloat16", "--config.layout=stacked",
                     "--config.mesh.data=4", "--config.mesh.model=2", "--config.mesh.params=fsdp",
                     "--config.record.hist=True", "--config.record.hist_bins=compact",
                     "--config.locate.steer_value=v95"))
  assert "record: weights in the stacked layout" in proc.stderr
  stats = _arrays(os.path.join(wd, "record", "stats.npz"))
  assert stats["hist"].shape[-1] == 32 and np.array_equal(stats["hist_edges"], COMPACT_EDGES)
  assert np.isfinite(stats["s1"]).all() and stats["s1"].dtype == np.float64
  np.testing.assert_array_equal(stats["hist"].sum(-1), np.broadcast_to(stats["tokens"][:, None, None],
                                                                       stats["hist"].shape[:3]))
  sets = json.load(open(os.path.join(wd, "locate", "summary.json")))
  assert sets and os.path.isfile(os.path.join(wd, "report.md"))


@pytest.mark.slow
def test_lape_runs_end_to_end(tiny_model, tmp_path):
  """LAPE's smoke run (ValueExploration's runs end to end in test_persona.py, ValueLocate's in the session's
  smoke run)."""
  wd = str(tmp_path / "w")
  _ok(_launch("launch.run", *_smoke_args(tiny_model, wd, "configs/lape.py:smoke")))
  metrics = json.load(open(os.path.join(wd, "intervene", "metrics.json")))
  assert metrics["units"] and all(p["effects"] for p in metrics["units"])
  assert "## Effect of each edit" in open(os.path.join(wd, "report.md")).read()


@pytest.mark.slow
@pytest.mark.subprocess
def test_record_resumes_bit_identical_after_kill(tiny_model, tmp_path):
  common = ["--config=configs/valuelocate.py:smoke", f"--config.model={tiny_model}",
            "--config.data.items_per_group=6", "--config.record.batch_size=2",
            "--config.record.max_new_tokens=24", "--config.record.checkpoint_every=1"]
  whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
  _ok(_launch("launch.record", *common, f"--workdir={whole}"))

  proc = subprocess.Popen([sys.executable, "-m", "launch.record", *common, f"--workdir={killed}"], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpts = os.path.join(killed, "record", "checkpoints")
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(ckpts) and any(d.isdigit() for d in os.listdir(ckpts)):
      break
    time.sleep(0.005)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(killed, "record", "done.json")), "the run finished before the kill"
  steps = sorted(int(d) for d in os.listdir(ckpts) if d.isdigit())
  assert steps and steps[-1] < 12

  resumed = _ok(_launch("launch.record", *common, f"--workdir={killed}"))
  assert "record: resuming from the checkpoint after batch" in resumed.stderr
  for name in ("stats.npz", "prompt_stats.npz"):
    a, b = _arrays(os.path.join(whole, "record", name)), _arrays(os.path.join(killed, "record", name))
    assert a.keys() == b.keys()
    for k in a:
      assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), (name, k)
  assert open(os.path.join(whole, "record", "texts.jsonl")).read() == open(
      os.path.join(killed, "record", "texts.jsonl")).read()


SWEEP_CONFIG = '''
import ml_collections as mlc
from configs import valuelocate

def get_config(arg=None):
  c = valuelocate.get_config("smoke")
  c.sweep.intervene = mlc.ConfigDict()
  c.sweep.intervene.gamma = (0.5, 2.0)
  c.sweep.record = mlc.ConfigDict()
  c.sweep.record.max_new_tokens = (4, 8, 16)
  if arg == "bad":
    c.sweep.record.max_tokens = (1, 2)
  return c
'''


def test_sweep_expands_as_declared(tmp_path):
  from launch import configfile, sweep
  path = tmp_path / "sweep_config.py"
  path.write_text(SWEEP_CONFIG)
  config = configfile.load_config(str(path))
  runs = sweep.expand(config)
  assert [name for name, _ in runs] == [f"gamma={g}_max_new_tokens={n}" for g in ("0.5", "2") for n in (4, 8, 16)]
  assert runs[1][1] == {"intervene.gamma": (0.5,), "record.max_new_tokens": 8}
  applied = sweep.apply(config, runs[1][1])
  assert applied.intervene.gamma == (0.5,) and applied.record.max_new_tokens == 8 and not applied.sweep
  with pytest.raises(Exception, match="max_tokens"):
    sweep.expand(configfile.load_config(f"{path}:bad"))

  listed = _ok(launch_in_process("launch.sweep", f"--config={path}", f"--workdir={tmp_path}/sw", "--list",
                                 "--config.record.batch_size=4"))
  lines = listed.stdout.strip().splitlines()
  assert len(lines) == 6
  assert f"--workdir={tmp_path}/sw/gamma=2_max_new_tokens=16" in lines[-1]
  assert "'--config.intervene.gamma=(2.0,)'" in lines[-1] and "--config.record.max_new_tokens=16" in lines[-1]
  assert all("--config.record.batch_size=4" in line for line in lines)


@pytest.mark.slow
def test_sweep_runs_each_point_in_its_own_workdir(tiny_model, tmp_path):
  path = tmp_path / "sweep_config.py"
  path.write_text(SWEEP_CONFIG.replace("(4, 8, 16)", "(4,)"))
  _ok(_launch("launch.sweep", f"--config={path}", f"--workdir={tmp_path}/sw", f"--config.model={tiny_model}",
              "--config.locate.size=12", "--config.intervene.n_controls=0",
              "--config.intervene.examples=0"))
  for name in ("gamma=0.5_max_new_tokens=4", "gamma=2_max_new_tokens=4"):
    cfg = json.load(open(tmp_path / "sw" / name / "config.json"))["config"]
    assert cfg["record"]["max_new_tokens"] == 4 and len(cfg["intervene"]["gamma"]) == 1
    assert (tmp_path / "sw" / name / "report.md").is_file()


@pytest.mark.parametrize("args, needles", [
    (["--config.intervene.gama=2"], ["intervene.gama", "Did you mean 'intervene.gamma'", "Valid keys"]),
    (["--config.record.mode=sample"], ["record.mode", "generate, teacher_forced"]),
    (["--config.record.batch_size=many"], ["record.batch_size", "expected a value of type int"]),
    (["--bogus=1"], ["unknown flag --bogus", "--workdir"]),
    (["--config=configs/valuelocate.py:smok"], ["'smok'", "smoke"]),
    (["--config=configs/nothing.py"], ["does not exist"]),
    (["--config.intervene.modes=('enhance','sideways')"], ["intervene.modes", "enhance, reverse"]),
])
def test_bad_flags_and_keys_exit_2_with_one_clear_message(tmp_path, args, needles):
  """In this process, through the launcher's own flag parsing and error boundary (see launch_in_process); the
  same boundary as a process of its own is test_bad_flag_in_a_process_exits_2_with_one_paragraph."""
  proc = launch_in_process("launch.record", f"--workdir={tmp_path}/w", *args)
  assert proc.returncode == 2, proc.stderr[-2000:]
  err = proc.stderr.strip()
  assert err.startswith("error:") and "Traceback" not in err
  for n in needles:
    assert n in err


@pytest.mark.subprocess
def test_bad_flag_in_a_process_exits_2_with_one_paragraph(tmp_path):
  """End to end as a user meets it: `python -m launch.record` with a mistyped key prints one paragraph and
  exits 2, no traceback."""
  proc = _launch("launch.record", f"--workdir={tmp_path}/w", "--config.intervene.gama=2", process=True)
  assert proc.returncode == 2, proc.stderr[-2000:]
  err = proc.stderr.strip()
  assert err.startswith("error:") and "Traceback" not in err and "Did you mean 'intervene.gamma'" in err
  assert len(err.splitlines()) == 1


@pytest.mark.subprocess
def test_missing_workdir_exits_2():
  proc = _launch("launch.run", "--config=configs/valuelocate.py:smoke", process=True)
  assert proc.returncode == 2 and "--workdir is required" in proc.stderr and "Traceback" not in proc.stderr


def test_config_arguments_are_typed():
  from configs import common
  from valuejax.errors import ValueJaxError
  arg = common.parse_arg("smoke,items=8", smoke=False, items=24, name="x")
  assert arg.smoke is True and arg.items == 8 and arg.name == "x"
  with pytest.raises(ValueJaxError, match="items='eight' is not of type int"):
    common.parse_arg("items=eight", items=24)


@pytest.mark.slow
def test_each_stage_holds_the_weights_in_its_layout(smoke_run):
  """layout=auto on a CPU: record generates from the decode layout, intervene scores over stacked layers; the
  one copy of the weights is converted between them (read from the session's shared smoke run)."""
  assert "record: weights in the decode layout" in smoke_run.stderr
  assert "intervene: weights in the stacked layout (converted in" in smoke_run.stderr


def test_auto_layout_follows_what_the_stage_does():
  """On a CPU: decode for generating (record, steer, an intervene stage whose metric generates), stacked for
  scoring; an explicit layout wins."""
  from configs import common
  from launch.runtime import stage_layout
  c = common.base_config("valuelocate")
  c.intervene.metric = "forced_choice"
  assert [stage_layout(c, s) for s in ("record", "intervene", "steer")] == ["decode", "stacked", "decode"]
  c.intervene.metric = "choice_protocol"
  assert stage_layout(c, "intervene") == "decode"
  c.layout = "stacked"
  assert stage_layout(c, "record") == "stacked"


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_second_run_reads_its_programs_from_the_compilation_cache(tiny_model, tmp_path):
  """Compiled programs persist in the compilation cache: the same run again compiles nothing it compiled
  before, and VALUEJAX_COMPILATION_CACHE=off keeps nothing."""
  cache = tmp_path / "xla"
  # Every program persists (threshold 0): with a threshold, one compiled just under it in the first run could
  # take over the 0.5 s that is logged in the second on a busy machine, and be counted as compiled again.
  env = dict(os.environ, PYTHONUNBUFFERED="1", VALUEJAX_COMPILATION_CACHE=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  run = lambda wd, **extra: subprocess.run(
      [sys.executable, "-m", "launch.record", *_smoke_args(tiny_model, str(tmp_path / wd))], cwd=REPO,
      env={**env, **extra}, capture_output=True, text=True, timeout=600)
  first = _ok(run("a"))
  assert f"compilation cache: {cache}" in first.stderr
  compiled = first.stderr.count("] compiled jit(")
  assert compiled and any(cache.iterdir())
  second = _ok(run("b"))
  assert second.stderr.count("] compiled jit(") < compiled
  assert "read a compiled program back from the compilation cache" in second.stderr
  off = _ok(run("c", VALUEJAX_COMPILATION_CACHE="off"))
  assert "compilation cache: off" in off.stderr and off.stderr.count("] compiled jit(") >= compiled
