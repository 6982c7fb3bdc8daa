"""The whole pipeline in one process: record -> locate -> intervene -> report, the model loaded once.

`python -m launch.run --config=configs/valuelocate.py --workdir=runs/valuelocate`; stages whose outputs
exist for the same config are skipped, so a rerun after a crash picks up where it stopped.
"""

from __future__ import annotations

from absl import flags
import ml_collections as mlc

from launch import cli, runtime
from launch.intervene import intervene
from launch.locate import locate
from launch.record import record
from launch.report import report
from launch.workdir import Workdir


def run_pipeline(config: mlc.ConfigDict, workdir: str, force: bool = False) -> str | None:
  wd = Workdir(workdir, config)
  runtime.setup(config)
  wd.write_config()
  model = None
  if wd.done("record") is None or wd.done("intervene") is None or force:
    model = runtime.load_model(config)
  record(config, wd, force, model)
  locate(config, wd, force)
  intervene(config, wd, force, model)
  return report(wd)


def main(config: mlc.ConfigDict) -> None:
  path = run_pipeline(config, cli.require_workdir(), flags.FLAGS.force)
  if path:
    print(f"report: {path}")


if __name__ == "__main__":
  cli.run(main)
