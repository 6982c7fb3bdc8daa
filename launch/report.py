"""Report stage: report.md from whatever the workdir holds (always rewritten; it takes a moment).

`python -m launch.report --workdir=runs/valuelocate` after any stage.
"""

from __future__ import annotations

from absl import logging
import ml_collections as mlc

from launch import cli
from valuejax.workdir import Timer, Workdir


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
  path = report(Workdir(cli.require_workdir(), config))
  if path:
    print(f"report: {path}")


if __name__ == "__main__":
  cli.run(main)
