"""Report stage: report.md from whatever the workdir holds (always rewritten; it takes a moment).

`python -m launch.report --workdir=runs/valuelocate` after any stage.
"""

from __future__ import annotations

import os

from absl import logging
import ml_collections as mlc

from launch import cli
from valuejax.errors import ValueJaxError
from valuejax.workdir import Timer, Workdir, layout


def report(wd: Workdir) -> str | None:
  if not wd.writer:
    return None
  from valuejax.report import write_report
  with Timer() as t:
    path = write_report(wd.root)
  wd.add_timing("report", t.seconds)
  logging.info("report: wrote %s in %.1f s", path, t.seconds)
  return path


def main(config: mlc.ConfigDict) -> None:
  root = cli.require_workdir()
  if not os.path.isfile(os.path.join(root, layout.CONFIG)):
    raise ValueJaxError("not a valuejax workdir (no config.json: no stage has finished there)", root,
                        "pass the --workdir of a run (python -m launch.run ... --workdir=<it>)")
  wd = Workdir(root, config)
  with wd.lock():
    path = report(wd)
  if path:
    print(f"report: {path}")


if __name__ == "__main__":
  cli.run(main, preflight=False)
