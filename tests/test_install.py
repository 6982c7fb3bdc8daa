"""`pip install` of a built wheel into a fresh environment gives a working `valuejax` command: the shipped
configs by name, the shipped data, the launchers, run from an unrelated working directory."""

from __future__ import annotations

import glob
import os
import shutil
import site
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd: list[str], cwd: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
  out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
  assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-3000:])
  return out


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_wheel_installs_a_valuejax_command_that_runs_from_anywhere(tiny_model, tmp_path):
  # Built from a copy of what setup.py packages: building in the checkout would leave a build/ folder there,
  # whose stale files a later build packages.
  src = str(tmp_path / "src")
  skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
  for part in ("valuejax", "launch", "configs", "data"):
    shutil.copytree(os.path.join(REPO, part), os.path.join(src, part), ignore=skip)
  shutil.copy(os.path.join(REPO, "setup.py"), src)
  dist = str(tmp_path / "dist")
  _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src], src)
  (wheel,) = glob.glob(os.path.join(dist, "valuejax-*.whl"))
  venv = str(tmp_path / "venv")
  # No pip of its own (ensurepip costs seconds): this environment's pip installs into it (pip --python).
  _run([sys.executable, "-m", "venv", "--without-pip", venv], str(tmp_path))
  py = os.path.join(venv, "bin", "python")
  # valuejax's dependencies come from this environment's site-packages (a path entry only: its .pth files,
  # such as the checkout's editable install, are not processed), valuejax itself from the wheel.
  purelib = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], str(tmp_path)).stdout.strip()
  deps = [p for p in site.getsitepackages() if os.path.isdir(p)]
  with open(os.path.join(purelib, "valuejax_test_deps.pth"), "w") as f:
    f.write("\n".join(deps) + "\n")
  _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", wheel], str(tmp_path))
  elsewhere = str(tmp_path / "elsewhere")
  os.makedirs(elsewhere)
  where = _run([py, "-c", "import valuejax, valuejax.command as c; print(valuejax.__file__); print(c.home())"],
               elsewhere).stdout.split()
  assert where[0].startswith(venv) and where[1] == os.path.join(venv, "share", "valuejax")
  # The session's tiny model, run as the session's smoke run is: the command's process reads the programs that
  # run compiled from the session's compilation cache (the same code, installed from the wheel).
  model = tiny_model
  exe = os.path.join(venv, "bin", "valuejax")
  shipped = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "configs"))
                   if f.endswith(".py") and f not in ("__init__.py", "common.py"))
  assert "valuelocate" in shipped and "languages" in shipped
  assert f"shipped configs: {', '.join(shipped)}" in _run([exe, "--help"], elsewhere).stdout
  env = dict(os.environ, PYTHONPATH="")
  _run([exe, "run", "--config=valuelocate:smoke", "--workdir=w", f"--config.model={model}",
        "--config.locate.size=12"], elsewhere, env)
  report = open(os.path.join(elsewhere, "w", "report.md"), encoding="utf-8").read()
  assert "valuejax report: valuelocate" in report
  config = open(os.path.join(elsewhere, "w", "config.json"), encoding="utf-8").read()
  assert '"command": "valuejax run --config=' in config
  bad = subprocess.run([exe, "frobnicate"], cwd=elsewhere, capture_output=True, text=True)
  assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr
