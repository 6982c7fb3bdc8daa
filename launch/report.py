"""Report stage: report.md from whatever the workdir holds (rendered each time; written when it changed).

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
  # The report's own time is logged, not kept in timings.json: report.md shows timings.json, so a time
  # recorded there would change report.md on every reread (and rereading a finished run writes nothing).
  if not wd.writer:
    return None
  from valuejax.report import write_report
  with Timer() as t:
    path = write_report(wd.root)
  logging.info("report: %s in %.1f s", path, t.seconds)
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


CLI = cli.Launcher(main, preflight=False)

if __name__ == "__main__":
  CLI.run()
