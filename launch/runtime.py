"""What every stage needs from the machine: compile logging, the device mesh, the (cached) model.

A stage run alone loads the model itself; `launch.run` loads it once and hands it to every stage.
"""

from __future__ import annotations

import functools
import logging as pylogging
import time

from absl import logging
import ml_collections as mlc


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_CACHE_SAVED_EVENT = "/jax/compilation_cache/compile_time_saved_sec"
_listening = False


def _log_compile(event: str, seconds: float, **kw) -> None:
  # Sub-second compiles are jax's own small helpers (casts, slices); they would drown the few that matter.
  if event == _COMPILE_EVENT and seconds >= 0.5:
    logging.info("compiled %s in %.1f s", kw.get("fun_name", "a function"), seconds)
  elif event == _CACHE_SAVED_EVENT and seconds >= 0.5:
    logging.info("read a compiled program back from the compilation cache (%.1f s of compiling saved)", seconds)


def compilation_cache_dir() -> str | None:
  """Where compiled programs persist between runs: `$VALUEJAX_COMPILATION_CACHE` ("off" turns the cache
  off), else jax's own `JAX_COMPILATION_CACHE_DIR` when set, else `<model cache>/xla/<machine>` (the model
  cache is `$VALUEJAX_CACHE` or ~/.cache/valuejax). The machine part keeps programs compiled for one CPU's
  instruction set away from another's, e.g. on a shared home directory."""
  import hashlib
  import os
  import platform
  import jax
  chosen = os.environ.get("VALUEJAX_COMPILATION_CACHE", "")
  if chosen.lower() == "off":
    return None
  if chosen:
    return os.path.expanduser(chosen)
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  flags = ""
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
  except OSError:
    pass
  tag = hashlib.sha1(f"{platform.machine()} {flags} {jax.__version__}".encode()).hexdigest()[:12]
  root = os.environ.get("VALUEJAX_CACHE") or os.path.join("~", ".cache", "valuejax")
  return os.path.join(os.path.expanduser(root), "xla", f"{platform.machine()}-{tag}")


def setup(config: mlc.ConfigDict) -> None:
  """Logs each XLA compilation that takes 0.5 s or more, with its duration (one line each), and keeps
  compiled programs on disk (see compilation_cache_dir): a second run of the same shapes skips compiling."""
  import jax
  global _listening
  cache = compilation_cache_dir()
  if cache and jax.config.jax_compilation_cache_dir != cache:
    jax.config.update("jax_compilation_cache_dir", cache)
  if config.log_compiles and not _listening:
    jax.monitoring.register_event_duration_secs_listener(_log_compile)
    _listening = True
  pylogging.getLogger("valuejax").setLevel(pylogging.INFO)
  # Orbax narrates every save step at INFO; its warnings and errors still come through.
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno >= pylogging.WARNING or "orbax" not in r.pathname)
  logging.info("jax %s on %d %s device(s), %d process(es); compilation cache: %s", jax.__version__,
               jax.device_count(), jax.devices()[0].platform, jax.process_count(), cache or "off")


def mesh(config: mlc.ConfigDict):
  """The (data, model) mesh of `config.mesh`, or None on a single device (nothing to shard)."""
  import jax
  from valuejax.engine import sharding
  if jax.device_count() == 1:
    if config.mesh.data not in (-1, 1) or config.mesh.model != 1:
      from valuejax.errors import ValueJaxError
      raise ValueJaxError(f"mesh data={config.mesh.data} x model={config.mesh.model} asks for more devices than "
                          "the 1 this process has", "--config.mesh", "use mesh.data=-1 and mesh.model=1 here")
    return None
  data = None if config.mesh.data == -1 else config.mesh.data
  return sharding.make_mesh(data, config.mesh.model)


@functools.lru_cache(maxsize=2)
def _load(spec: str, dtype: str):
  import valuejax
  start = time.perf_counter()
  model = valuejax.load_model(spec, dtype=dtype)
  logging.info("loaded %s (%d layers x %d neurons) from %s in %.1f s", spec, model.config.num_layers,
               model.config.intermediate_size, model.source, time.perf_counter() - start)
  return model


def _generates(config: mlc.ConfigDict, stage: str) -> bool:
  """Whether the stage's work is mostly generation: record and steer, and intervene with a metric that
  generates its answers (choice_protocol); otherwise it scores many edits at once."""
  if stage == "intervene":
    from valuejax import metrics
    return metrics.METRICS.get(config.intervene.metric).generates
  return stage in ("record", "steer")


def stage_layout(config: mlc.ConfigDict, stage: str) -> str:
  """The layout a stage holds the weights in: `config.layout`, or for "auto" the one measured faster for
  the stage's work. On a CPU, generation decodes faster from the decode layout (unrolled layers read their
  weights in place), while scoring many vmapped edits is faster and needs half the memory over stacked
  layers (the demo's intervene stage on SmolLM2: 182 s and 2.6 GB stacked, 211 s and 5.1 GB decode).
  Accelerators keep the stacked layout (one compiled layer body)."""
  import jax
  layout = config.layout
  if layout != "auto":
    return layout
  return "decode" if jax.default_backend() == "cpu" and _generates(config, stage) else "stacked"


def load_model(config: mlc.ConfigDict, stage: str = "record", model=None):
  """The config's model (loaded once per process, or `model`) in the stage's layout (see `stage_layout`),
  with params placed on the mesh. The model holds one copy of its weights: a change of layout converts it
  in place, freeing each old array as it goes."""
  m = mesh(config)
  if model is None:
    model = _load(config.model, config.dtype)
  if model.tokenizer is None:
    from valuejax.errors import ValueJaxError
    raise ValueJaxError("the model has no tokenizer files (tokenizer.json, tokenizer_config.json, ...), and every "
                        "stage encodes text", model.source, "save the tokenizer beside the weights "
                        "(tokenizer.save_pretrained(folder))")
  layout = stage_layout(config, stage)
  how = "as loaded"
  if model.layout != layout:
    start = time.perf_counter()
    # Sharded runs keep whole matrices: the mesh spreads them over devices, not row blocks over cores.
    model.relayout(layout, parts=None if m is None else 1)
    how = f"converted in {time.perf_counter() - start:.1f} s"
  logging.info("%s: weights in the %s layout (%s)", stage, layout, how)
  if m is not None:
    from valuejax.engine import sharding
    rules = tuple((r[0], tuple(r[1])) for r in config.mesh.rules)
    model.params = sharding.shard_params(model.params, m, config.mesh.params, rules or None)
  return model
