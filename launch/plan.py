"""A memory plan: bytes per device of a record run, from a model's config.json alone (no weights, no devices).

`python -m launch.plan --model=<config.json or model folder> --mesh_data=4 --mesh_model=16 --params=fsdp
 --dtype=bfloat16 --batch=64 --prompt_tokens=256 --new_tokens=48 --groups=24 --device_gib=16`
prints weights, KV cache, activations, statistics and histogram per device, their total, and whether the run
fits. Flags left out take the value of the run config (`--config`, default configs/valuelocate.py, with
`--config.<key>=...` overrides): mesh, params, rules, dtype, layout, record mode, batch size, answer length,
histogram and the number of groups its method records. See valuejax/plan.py for what each number counts.
"""

from __future__ import annotations

import os

from absl import flags
import ml_collections as mlc

from launch import cli
from valuejax.errors import ValueJaxError

flags.DEFINE_string("model", None, "A model's config.json, or the folder that holds it (no weights are read). "
                    "Default: the config's model, when it is such a folder.")
flags.DEFINE_integer("devices", None, "Devices in all, for a mesh whose data axis is -1 (every device the "
                     "model axis leaves); without it such an axis is planned as 1, every row on each device.")
flags.DEFINE_integer("mesh_data", None, "Size of the data axis (default: the config's mesh.data; -1: see "
                     "--devices).")
flags.DEFINE_integer("mesh_model", None, "Size of the model axis (default: the config's mesh.model).")
flags.DEFINE_enum("params", None, ["replicated", "fsdp"], "Weights replicated or split over the model axis "
                  "(default: the config's mesh.params).")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "The weights' dtype (default: the config's dtype, "
                  "else float32). Statistics are float32 / int32 either way.")
flags.DEFINE_enum("layout", None, ["auto", "stacked", "decode"], "The weights' layout (default: the config's; "
                  "auto plans the accelerator's, stacked).")
flags.DEFINE_enum("mode", None, ["generate", "teacher_forced"], "Record mode (default: the config's "
                  "record.mode).")
flags.DEFINE_integer("batch", None, "Rows per batch over all devices (default: the config's record.batch_size).")
flags.DEFINE_integer("prompt_tokens", 256, "Tokens of the longest prompt of a batch.")
flags.DEFINE_integer("new_tokens", None, "Answer length (default: the config's record.max_new_tokens).")
flags.DEFINE_integer("groups", None, "Groups recorded (default: those of the config's method and data, e.g. "
                     "4 for valuelocate, 24 for valueexploration).")
flags.DEFINE_bool("hist", None, "Record activation histograms (default: the config's record.hist).")
flags.DEFINE_enum("hist_bins", None, ["full", "compact"], "Histogram kind: full (301 bins) or compact (32) "
                  "(default: the config's record.hist_bins).")
flags.DEFINE_float("device_gib", None, "Memory of one device in GiB (e.g. 16 for a TPU v5e chip, 80 for an "
                   "H100); with it the plan says whether the run fits.")
flags.DEFINE_float("headroom", 0.10, "Fraction of device memory kept free for XLA's workspace, compiled "
                   "programs and fragmentation.")

FLAGS = flags.FLAGS
_EXTRA = ("--model", "--devices", "--mesh_data", "--mesh_model", "--params", "--dtype", "--layout", "--mode",
          "--batch", "--prompt_tokens", "--new_tokens", "--groups", "--hist", "--hist_bins", "--device_gib",
          "--headroom")


def _or(flag: str, config: mlc.ConfigDict, key: str):
  """The flag's value if given, else the config's `key` (dotted; check_config has made sure it is there)."""
  from valuejax.validate import get_key
  value = FLAGS[flag].value
  return get_key(config, key) if value is None else value


def _model_path(config: mlc.ConfigDict) -> str:
  if FLAGS.model:
    return FLAGS.model
  spec = str(config.model)
  if spec and (os.path.isdir(spec) or spec.endswith(".json")):
    return spec
  raise ValueJaxError(f"no model config.json to plan for (the config's model {spec!r} is not a folder)", "--model",
                      "pass --model=<a model's config.json or its folder>, e.g. "
                      "--model=tests/fixtures/model_configs/Llama-3.1-70B")


def _data_axis(config: mlc.ConfigDict, model: int) -> int:
  data = _or("mesh_data", config, "mesh.data")
  if data != -1:
    return data
  if FLAGS.devices is None:
    return 1  # every row on each device: the most any data axis size can ask of one device
  if FLAGS.devices < 1 or FLAGS.devices % model:
    raise ValueJaxError(f"the model axis {model} does not divide {FLAGS.devices} devices", "--devices",
                        "choose a model axis size that divides the device count")
  return FLAGS.devices // model


def _groups(config: mlc.ConfigDict) -> int:
  if FLAGS.groups is not None:
    return FLAGS.groups
  from valuejax import methods
  try:
    method = methods.METHODS.get(config.method)
    return len(method.groups(config, method.load_dataset(config)))
  except ValueJaxError as e:
    raise ValueJaxError(f"cannot count the groups of the config's method {config.method!r}: {e.what}",
                        e.where, "pass --groups=<number of recorded groups>") from None


def main(config: mlc.ConfigDict) -> None:
  from valuejax.plan import memory_plan, read_model_config
  cfg = read_model_config(_model_path(config))
  model = _or("mesh_model", config, "mesh.model")
  rules = tuple((r[0], tuple(r[1])) for r in config.mesh.rules)
  plan = memory_plan(
      cfg, data=_data_axis(config, model), model=model, dtype=_or("dtype", config, "dtype"),
      params=_or("params", config, "mesh.params"), rules=rules or None,
      layout=_or("layout", config, "layout"), mode=_or("mode", config, "record.mode"),
      batch=_or("batch", config, "record.batch_size"), prompt_tokens=FLAGS.prompt_tokens,
      new_tokens=_or("new_tokens", config, "record.max_new_tokens"), groups=_groups(config),
      hist=bool(_or("hist", config, "record.hist")),
      hist_bins=_or("hist_bins", config, "record.hist_bins"), device_gib=FLAGS.device_gib,
      headroom=FLAGS.headroom)
  print(plan.table())


CLI = cli.Launcher(main, extra_flags=_EXTRA, preflight=False)

if __name__ == "__main__":
  CLI.run()
