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
    budget, seed2 = _budget(config), _pairing_seed2(config)  # checked before the model loads
    pairing = _pairing_prompts(config, seed2) if seed2 else None
    model = runtime.load_model(config, "record", model)
    state, n_batches = _run(config, wd, force, model, budget)
    outputs = workdir.write_record(wd, state, generated=config.record.mode == "generate",
                                   halves=bool(config.record.halves))
    if budget:
      outputs += _write_budget(config, wd, state)
    if seed2:
      outputs += _record_pairing(config, wd, force, model, seed2, pairing)
  wd.mark_done("record", t.seconds, outputs, batches=n_batches, tokens=state.tokens)
  wd.add_timing("record", t.seconds, tokens=state.tokens, engine_seconds=round(state.seconds, 3))
  logging.info("record: done in %.1f s, %d tokens (%.0f tokens/s in the engine)", t.seconds, state.tokens,
               state.tokens / max(state.seconds, 1e-9))


def _run(config: mlc.ConfigDict, wd: Workdir, force: bool, model, budget: int = 0, prompts=None,
         ckpt_rel: str = layout.RECORD_CHECKPOINTS):
  """The recording of `prompts` (default: the method's recording prompts, in halves with record.halves) with
  a token budget's statistics beside it when `budget` > 0, checkpointed under `ckpt_rel`."""
  from valuejax.engine.record import Recorder, RecordState, split_halves
  r = config.record
  method = methods.METHODS.get(config.method)
  halves = r.halves and prompts is None
  groups, prompts = method.record_prompts(config, method.load_dataset(config)) if prompts is None else prompts
  # Split-half recording counts each group's items into two seeded halves: the same prompts, batches and
  # generated tokens, only the sums they count towards are split (write_record stores both and their sum).
  stats_groups, group_of = split_halves(groups, prompts, _half_seed(config)) if halves else (groups, None)
  recorder = Recorder(model, groups=stats_groups, batch_size=r.batch_size, max_new_tokens=r.max_new_tokens,
                      mode=r.mode, hist=r.hist, hist_bins=r.hist_bins,
                      repetition_penalty=r.repetition_penalty,
                      temperature=r.temperature, top_p=r.top_p, seed=config.seed,
                      mesh=runtime.mesh(config), group_of=group_of, budget_tokens=budget)
  n_batches = len(_batches(config, recorder, prompts))
  logging.info("record: %d prompts in %d groups (%s), %d batches of %d, mode %s", len(prompts), len(groups),
               ", ".join(groups), n_batches, r.batch_size, r.mode)
  ckpt_dir = wd.path(ckpt_rel)
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


def _write_budget(config: mlc.ConfigDict, wd: Workdir, state) -> list[str]:
  """The short budget's statistics (halves joined, as record/stats.npz), which the locate stage locates on."""
  from valuejax.engine.record import join_halves
  from valuejax.workdir.stability_records import write_budget
  stats = join_halves(state.budget_stats) if config.record.halves else state.budget_stats
  logging.info("record: the first %d generated tokens of each answer also counted alone (%d tokens of %d)",
               config.record.budget_tokens, int(stats.tokens.sum()), int(state.gen_stats.tokens.sum()))
  return write_budget(wd, stats)


def _record_pairing(config: mlc.ConfigDict, wd: Workdir, force: bool, model, seed2: int, pairing) -> list[str]:
  """The same groups recorded again with the items paired under data.seed = seed2 (`pairing`: the groups, the
  prompts and how many differ, from _pairing_prompts): one more recording, as long as the first, checkpointed
  apart."""
  from valuejax.workdir.stability_records import PAIRING_CHECKPOINTS, write_pairing
  groups, prompts, changed = pairing
  logging.info("record: a second pairing (data.seed = %d): %d of %d prompts pair other items", seed2, changed,
               len(prompts))
  state, _ = _run(config, wd, force, model, prompts=(groups, prompts), ckpt_rel=PAIRING_CHECKPOINTS)
  stats = state.gen_stats if config.record.mode == "generate" else state.prompt_stats
  return write_pairing(wd, stats, seed2, len(prompts), changed, state.tokens)


def _pairing_prompts(config: mlc.ConfigDict, seed2: int) -> tuple[list, list, int]:
  """(groups, prompts, how many prompts differ from the run's own) of the recording with data.seed = seed2;
  refused when that seed pairs every item as data.seed does (the method's prompts do not depend on data.seed),
  since the second recording would then only repeat the first."""
  method = methods.METHODS.get(config.method)
  first = method.record_prompts(config, method.load_dataset(config))[1]
  other = config.copy_and_resolve_references()
  with other.unlocked():
    other.data.seed = seed2
  groups, prompts = method.record_prompts(other, method.load_dataset(other))
  changed = len({p.id for p in prompts} - {p.id for p in first})
  if not changed:
    raise ValueJaxError(f"data.seed = {seed2} pairs the recording items exactly as data.seed = "
                        f"{config.data.seed} does (method {config.method})", "--config.record.pairing_seed2",
                        "set record.pairing_seed2 = 0: this method's recording prompts do not depend on data.seed")
  return groups, prompts, changed


def _budget(config: mlc.ConfigDict) -> int:
  """record.budget_tokens: 0 (off) or a count of generated tokens below record.max_new_tokens."""
  r = config.record
  budget = r.budget_tokens
  if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
    raise ValueJaxError(f"record.budget_tokens must be an integer >= 0, got {budget!r}",
                        "--config.record.budget_tokens", "set it to 0 (off) or a count of generated tokens")
  if budget and (r.mode != "generate" or budget >= r.max_new_tokens):
    raise ValueJaxError(f"record.budget_tokens = {budget} with record.mode = {r.mode!r} and max_new_tokens = "
                        f"{r.max_new_tokens}", "--config.record.budget_tokens",
                        "a budget counts generated tokens: use generate mode and a budget below max_new_tokens "
                        "(or 0, off)")
  return budget


def _pairing_seed2(config: mlc.ConfigDict) -> int:
  """record.pairing_seed2: 0 (off) or a data.seed other than the run's."""
  seed2 = config.record.pairing_seed2
  if isinstance(seed2, bool) or not isinstance(seed2, int):
    raise ValueJaxError(f"record.pairing_seed2 must be an integer, got {seed2!r}", "--config.record.pairing_seed2",
                        "set it to 0 (off) or a seed other than data.seed")
  if seed2:
    from valuejax.validate import require
    require(config, ["data.seed"], "a second item pairing (record.pairing_seed2)")
    if seed2 == config.data.seed:
      raise ValueJaxError(f"record.pairing_seed2 = {seed2} is the run's own data.seed",
                          "--config.record.pairing_seed2", "set it to another seed (or 0, off)")
  return seed2


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


CLI = cli.Launcher(main)

if __name__ == "__main__":
  CLI.run()
