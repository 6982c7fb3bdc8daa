"""The whole pipeline in one process: record -> locate -> intervene -> report, the model loaded once.

`python -m launch.run --config=configs/valuelocate.py --workdir=runs/valuelocate`; stages whose outputs
exist for the same config are skipped, so a rerun after a crash picks up where it stopped.
"""

from __future__ import annotations

import os

from absl import flags
import ml_collections as mlc

from launch import cli, configfile, runtime
from launch.intervene import intervene
from launch.locate import locate
from launch.record import record
from launch.report import report
from valuejax.workdir import Workdir, layout

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def run_pipeline(config: mlc.ConfigDict, workdir: str, force: bool = False, model=None) -> str | None:
  wd = Workdir(workdir, config)
  runtime.setup(config)
  # The positive control's config is checked (values and data) now, not after the main run.
  pc = positive_control_config(config) if config.positive_control else None
  with wd.lock():
    if model is None and (force or wd.done("record", verify=False) is None
                          or wd.done("intervene", verify=False) is None):
      model = runtime.load_model(config)
    record(config, wd, force, model)
    locate(config, wd, force)
    intervene(config, wd, force, model)
    if pc is not None:
      # The positive control runs on the same model in a workdir of its own inside this one; a rerun finds it
      # done (same fingerprints) and the report reads it back.
      run_pipeline(pc, wd.path(layout.POSITIVE_CONTROL), force, model)
    return report(wd)


def positive_control_config(config: mlc.ConfigDict) -> mlc.ConfigDict:
  """The config named by `config.positive_control` (`file.py[:arg]`, relative to configs/ unless it is a
  path that exists), on the main run's model, mesh and logging."""
  spec = config.positive_control
  path = spec.partition(".py:")[0] + ".py" if ".py:" in spec else spec
  if not os.path.isabs(path) and not os.path.isfile(path):
    spec = os.path.join(CONFIGS, spec)
  pc = configfile.load_config(spec)
  with pc.unlocked():
    pc.model, pc.log_compiles = config.model, config.log_compiles
    pc.mesh = config.mesh
    for key in ("dtype", "layout"):  # the same model in memory: one copy, one layout
      if key in config:
        pc[key] = config[key]
  cli.check_config(pc)
  cli.check_data(pc)
  return pc


def main(config: mlc.ConfigDict) -> None:
  path = run_pipeline(config, cli.require_workdir(), flags.FLAGS.force)
  if path:
    print(f"report: {path}")


CLI = cli.Launcher(main)

if __name__ == "__main__":
  CLI.run()
