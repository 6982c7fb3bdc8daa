"""Steer one located pair and read the answers side by side:

  python -m launch.steer --workdir=runs/valuelocate --pair=openness_to_change_vs_conservation --gamma=2 \
      --prompt="Should I take the new job abroad?"

The model, the steer value and the chat setting are the run's own (its config.json); the neuron set is the
pair's `locate/<pair>.npz`. Prints the unedited answer, enhance (toward the first aspect), reverse (toward
the second) and random neurons of the same per-layer counts enhanced the same way.
"""

from __future__ import annotations

import os

from absl import flags
import ml_collections as mlc

from launch import cli, runtime
from valuejax.errors import ValueJaxError
from valuejax.workdir import layout

flags.DEFINE_string("pair", None, "The located pair (a name in locate/summary.json); default: the first.")
flags.DEFINE_float("gamma", 2.0, "Steering strength.")
flags.DEFINE_multi_string("prompt", [], "A prompt to answer (repeat the flag for several).")
flags.DEFINE_integer("max_new_tokens", 64, "Tokens per answer.")
flags.DEFINE_integer("controls", 1, "Random neuron sets of the same per-layer counts to steer alike.")
FLAGS = flags.FLAGS


def main(_: mlc.ConfigDict) -> None:
  from valuejax.locate import NeuronSet
  from valuejax.methods.steer import format_answers, steer_answers
  root = cli.require_workdir()
  ran = layout.read(root, layout.CONFIG)
  sets = layout.read(root, layout.LOCATE_SUMMARY)
  if not ran or not sets:
    raise ValueJaxError("no located neuron sets here", root, "run the pipeline first (python -m launch.run ...)")
  config = mlc.ConfigDict(ran["config"])
  name = FLAGS.pair or next(iter(sets))
  if name not in sets:
    raise ValueJaxError(f"no neuron set {name!r} in this run", "--pair", f"use one of {', '.join(sets)}")
  ns = NeuronSet.load(os.path.join(root, layout.neuron_set(name)))
  if len(ns.names) != 2:
    raise ValueJaxError(f"set {name!r} has groups {ns.names}, not one opposing pair", "--pair",
                        "steer a ValueLocate pair")
  runtime.setup(config)
  model = runtime.load_model(config, "steer")
  results = steer_answers(model, ns, *ns.names, FLAGS.prompt, gamma=FLAGS.gamma,
                          steer_value=config.locate.steer_value,
                          keep_prob=config.intervene.keep_prob, controls=FLAGS.controls,
                          max_new_tokens=FLAGS.max_new_tokens, chat=bool(config.data.chat),
                          repetition_penalty=config.record.repetition_penalty, seed=config.seed)
  print(format_answers(results))


CLI = cli.Launcher(main, extra_flags=("--pair", "--gamma", "--prompt", "--max_new_tokens", "--controls"),
                   preflight=False)

if __name__ == "__main__":
  CLI.run()
