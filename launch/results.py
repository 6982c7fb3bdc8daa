"""A results page from finished workdirs (e.g. one per model), generated from their own outputs.

`python -m launch.results --workdirs=runs/study/smollm2-135m-instruct,runs/study/gemma3-270m
 --out=docs/results/study.md --title="..."`
"""

from __future__ import annotations

import shlex
import sys

from absl import flags

from launch import cli

flags.DEFINE_list("workdirs", [], "Finished run folders, one section each, in this order.")
flags.DEFINE_string("out", "docs/results/results.md", "The page to write; figures go into folders beside it.")
flags.DEFINE_string("title", "valuejax results", "The page's title.")


def main() -> None:
  from valuejax.report.results import write_results
  command = "python -m launch.results " + " ".join(map(shlex.quote, sys.argv[1:]))
  path = write_results(flags.FLAGS.workdirs, flags.FLAGS.out, flags.FLAGS.title, command)
  print(f"results: {path}")


# The launchers' error boundary (launch/cli.py): a bad workdir is one paragraph on stderr, exit 2.
CLI = cli.Launcher(main, extra_flags=("--workdirs", "--out", "--title"), config=False)

if __name__ == "__main__":
  CLI.run()
