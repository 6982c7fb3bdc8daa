"""Record stage: run the model over the activation prompts and accumulate per-neuron statistics per group.

Checkpointed every `record.checkpoint_every` batches; a killed run started again resumes exactly.
"""

from __future__ import annotations

import time

from absl import flags, logging
import ml_collections as mlc

from launch import cli, runtime
from valuejax import methods, workdir
from valuejax.errors import ValueJaxError
from valuejax.workdir import Timer, Workdir, checkpoint, fingerprint, layout


def record(config: mlc.ConfigDict, wd: Workdir, force: bool = False, model=None) -> None:
  if wd.should_skip("record", force):
    return
  with Timer() as t:
    model = runtime.load_model(config, "record", model)
    state, n_batches = _run(config, wd, force, model)
    outputs = workdir.write_record(wd, state, generated=config.record.mode == "generate",
                                   halves=bool(config.record.halves))
  wd.mark_done("record", t.seconds, outputs, batches=n_batches, tokens=state.tokens)
  wd.add_timing("record", t.seconds, tokens=state.tokens, engine_seconds=round(state.seconds, 3))
  logging.info("record: done in %.1f s, %d tokens (%.0f tokens/s in the engine)", t.seconds, state.tokens,
               state.tokens / max(state.seconds, 1e-9))


def _run(config: mlc.ConfigDict, wd: Workdir, force: bool, model):
  from valuejax.engine.record import Recorder, RecordState, split_halves
  r = config.record
  method = methods.METHODS.get(config.method)
  groups, prompts = method.record_prompts(config, method.load_dataset(config))
  # Split-half recording counts each group's items into two seeded halves: the same prompts, batches and
  # generated tokens, only the sums they count towards are split (write_record stores both and their sum).
  stats_groups, group_of = split_halves(groups, prompts, _half_seed(config)) if r.halves else (groups, None)
  recorder = Recorder(model, groups=stats_groups, batch_size=r.batch_size, max_new_tokens=r.max_new_tokens,
                      mode=r.mode, hist=r.hist, hist_bins=r.hist_bins,
                      repetition_penalty=r.repetition_penalty,
                      temperature=r.temperature, top_p=r.top_p, seed=config.seed,
                      mesh=runtime.mesh(config), group_of=group_of)
  n_batches = len(_batches(config, recorder, prompts))
  logging.info("record: %d prompts in %d groups (%s), %d batches of %d, mode %s", len(prompts), len(groups),
               ", ".join(groups), n_batches, r.batch_size, r.mode)
  ckpt_dir = wd.path(layout.RECORD_CHECKPOINTS)
  if force and wd.writer:
    checkpoint.clear(ckpt_dir)
  ckpt = checkpoint.StatsCheckpointer(ckpt_dir, r.keep_checkpoints, fingerprint(config, "record"))
  restored = ckpt.restore_latest()
  state = None
  if restored is not None:
    state = RecordState.from_arrays(checkpoint.flatten(restored[1]))
    logging.info("record: resuming from the checkpoint after batch %d of %d", state.batches_done, n_batches)
  start, first = time.perf_counter(), None if state is None else state.batches_done

  def on_batch(s) -> None:
    nonlocal first
    first = s.batches_done - 1 if first is None else first
    done_here = s.batches_done - first
    eta = (time.perf_counter() - start) / done_here * (n_batches - s.batches_done)
    saved = s.batches_done % r.checkpoint_every == 0 or s.batches_done == n_batches
    if saved:
      ckpt.save(s.batches_done, checkpoint.nest(s.to_arrays()))
    logging.info("record: batch %d/%d, %.0f tokens/s, ETA %s%s", s.batches_done, n_batches,
                 s.tokens / max(s.seconds, 1e-9), _duration(eta), ", checkpoint saved" if saved else "")

  state = recorder.run(prompts, state, on_batch)
  ckpt.close()
  return state, n_batches


def _half_seed(config: mlc.ConfigDict) -> int:
  """The seed of the split into halves (data.half_seed), which a config recording halves must name."""
  from valuejax.validate import require
  require(config, ["data.half_seed"], "split-half recording (record.halves = True)")
  seed = config.data.half_seed
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise ValueJaxError(f"record.halves = True needs an integer data.half_seed, got {seed!r}",
                        "--config.data.half_seed",
                        "set --config.data.half_seed=0 (or record.halves=False)")
  return seed


def _batches(config: mlc.ConfigDict, recorder, prompts):
  """The recorder's batches; a prompt longer than it takes is named by its item and by the config entry that
  chose the data (the engine's own error names a parameter of its Python API, which no config sets)."""
  from valuejax.engine.record import PromptTooLong
  try:
    return recorder.batches(prompts)
  except PromptTooLong as e:
    p = e.prompt
    data = ", ".join(f"data.{k} = {config.data[k]!r}" for k in ("framework", "cvoice_activation")
                     if config.data.get(k))
    raise ValueJaxError(
        f"the recording prompt of item '{p.item_id}' (group '{p.group}', template '{p.template}') is {e.tokens} "
        f"tokens long; the record stage takes prompts of at most {e.limit} tokens", data or "the run's data",
        "shorten that item's text in the data files (or remove the item), or set data.framework to data "
        "whose items are shorter; the limit is not a config entry") from None


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def main(config: mlc.ConfigDict) -> None:
  wd = Workdir(cli.require_workdir(), config)
  runtime.setup(config)
  with wd.lock():
    record(config, wd, flags.FLAGS.force)


if __name__ == "__main__":
  cli.run(main)
