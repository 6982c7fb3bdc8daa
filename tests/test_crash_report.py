"""A worker that dies of a fatal signal leaves the stack of the thread that died in the run's summary."""

import os
import subprocess
import sys

import pytest

from tests.crash_report import crashing_thread

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DUMP = """Fatal Python error: Segmentation fault

Thread 0x00007f01 (most recent call first):
  File "/x/threading.py", line 331 in wait

Current thread 0x00007f02 (most recent call first):
  File "/x/jax/_src/interpreters/pxla.py", line 1297 in __call__
  File "/repo/tests/test_scale.py", line 127 in test_statistics

Extension modules: numpy._core._multiarray_umath, jaxlib.cpu_feature_guard (total: 2)
"""


def test_the_crashing_threads_stack_is_cut_from_the_dump():
  assert crashing_thread(DUMP) == (
      "Fatal Python error: Segmentation fault\n"
      "Current thread 0x00007f02 (most recent call first):\n"
      '  File "/x/jax/_src/interpreters/pxla.py", line 1297 in __call__\n'
      '  File "/repo/tests/test_scale.py", line 127 in test_statistics')
  assert crashing_thread("no thread marked\n") == "no thread marked"


@pytest.mark.subprocess
def test_a_crashed_worker_prints_where_it_crashed(tmp_path):
  (tmp_path / "pytest.ini").write_text("[pytest]\n")
  (tmp_path / "test_dies.py").write_text(
      "import faulthandler\n\ndef test_dies():\n  faulthandler._sigsegv()\n\ndef test_lives():\n  pass\n")
  # a run of its own: not this run's crash folder, nor (under xdist) this worker's identity
  env = {k: v for k, v in os.environ.items() if k != "VALUEJAX_TEST_CRASH_DIR" and not k.startswith("PYTEST_")}
  env["PYTHONPATH"] = REPO
  proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.crash_report",
                         "-n", "1", "-c", str(tmp_path / "pytest.ini"), str(tmp_path / "test_dies.py")],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  summary = proc.stdout[proc.stdout.index("worker gw0 crashed: its thread at the crash"):]
  assert "Fatal Python error: Segmentation fault" in summary
  assert "Current thread" in summary and "test_dies.py\", line 4 in test_dies" in summary
  assert "1 failed, 1 passed" in proc.stdout
