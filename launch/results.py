"""A results page from finished workdirs (e.g. one per model), generated from their own outputs.

`python -m launch.results --workdirs=runs/study/smollm2-135m-instruct,runs/study/gemma3-270m
 --out=docs/results/study.md --title="..."`
"""

from __future__ import annotations

import shlex
import sys

from absl import app, flags

from launch import cli
from valuejax.errors import ValueJaxError

flags.DEFINE_list("workdirs", [], "Finished run folders, one section each, in this order.")
flags.DEFINE_string("out", "docs/results/results.md", "The page to write; figures go into folders beside it.")
flags.DEFINE_string("title", "valuejax results", "The page's title.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.usage_exit(f"unexpected argument(s) {' '.join(argv[1:])!r}: every input is a flag")
  from valuejax.report.results import write_results
  command = "python -m launch.results " + " ".join(map(shlex.quote, sys.argv[1:]))
  try:
    path = write_results(flags.FLAGS.workdirs, flags.FLAGS.out, flags.FLAGS.title, command)
  except ValueJaxError as e:
    cli.usage_exit(str(e))
  print(f"results: {path}")


if __name__ == "__main__":
  app.run(main)
