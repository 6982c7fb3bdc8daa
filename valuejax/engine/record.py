"""Recording: run a model over a list of prompts and accumulate per-group neuron statistics on the host.

Batches are formed deterministically (prompts sorted by token length), so a checkpointed `RecordState`
resumes exactly: batches already counted are skipped, none is counted twice.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from valuejax.data.templates import Prompt
from valuejax.engine.batching import pack_rows, prompt_bos, special_ids  # noqa: F401 (prompt_bos: record's name)
from valuejax.engine.generate import Generator, Sampling, StatsSpec, TeacherForcer
from valuejax.engine.stats import NeuronStats
from valuejax.errors import ValueJaxError

log = logging.getLogger("valuejax")


@dataclasses.dataclass
class RecordState:
  prompt_stats: NeuronStats
  gen_stats: NeuronStats | None
  texts: dict[str, str]
  batches_done: int = 0
  tokens: int = 0  # tokens processed (prompt + generated), for throughput reports
  seconds: float = 0.0
  # The generated tokens' statistics over each row's first `budget_tokens` alone (Recorder's budget_tokens)
  budget_stats: NeuronStats | None = None

  def to_arrays(self) -> dict[str, np.ndarray]:
    out = {f"prompt/{k}": v for k, v in self.prompt_stats.to_arrays().items()}
    if self.gen_stats is not None:
      out.update({f"gen/{k}": v for k, v in self.gen_stats.to_arrays().items()})
    if self.budget_stats is not None:
      out.update({f"budget/{k}": v for k, v in self.budget_stats.to_arrays().items()})
    ids = list(self.texts)
    out["texts/ids"] = np.array(ids, dtype=np.str_)
    out["texts/values"] = np.array([self.texts[i] for i in ids], dtype=np.str_)
    out["progress"] = np.array([self.batches_done, self.tokens], np.int64)
    out["seconds"] = np.array(self.seconds, np.float64)
    return out

  @classmethod
  def from_arrays(cls, d: dict[str, Any]) -> "RecordState":
    part = lambda prefix: {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}
    gen, budget = part("gen/"), part("budget/")
    progress = np.asarray(d["progress"])
    return cls(NeuronStats.from_arrays(part("prompt/")), NeuronStats.from_arrays(gen) if gen else None,
               dict(zip(np.asarray(d["texts/ids"]).tolist(), np.asarray(d["texts/values"]).tolist())),
               int(progress[0]), int(progress[1]), float(np.asarray(d.get("seconds", 0.0))),
               NeuronStats.from_arrays(budget) if budget else None)


def encode_prompt(tokenizer, prompt: Prompt, bos_token_id: int | None = None) -> list[int]:
  """Token ids of one prompt: chat template when the prompt asks for it and the tokenizer has one, else plain
  text with <bos>."""
  if not prompt.text:
    raise ValueJaxError(f"prompt {prompt.id!r} has no text", fix="give every prompt its text")
  if prompt.chat and getattr(tokenizer, "chat_template", None):
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt.text}], add_generation_prompt=True,
                                         tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
  ids = list(tokenizer(prompt.text, add_special_tokens=False)["input_ids"])
  # Models trained with <bos> (Gemma) produce garbage without it.
  if bos_token_id is not None and (not ids or ids[0] != bos_token_id):
    ids = [bos_token_id] + ids
  return ids


class PromptTooLong(ValueJaxError):
  """A prompt over the Recorder's `max_prompt_tokens`; carries the prompt, its length and the limit, so a
  caller can say which of its own settings chose it."""

  def __init__(self, prompt: Prompt, tokens: int, limit: int):
    super().__init__(f"prompt {prompt.id!r} has {tokens} tokens, more than max_prompt_tokens {limit}",
                     fix="shorten it or raise max_prompt_tokens")
    self.prompt, self.tokens, self.limit = prompt, tokens, limit


class Recorder:
  """Accumulates statistics of generated (or teacher-forced) tokens for named groups of prompts."""

  def __init__(self, model, *, groups: Sequence[str], batch_size: int = 16, max_new_tokens: int = 64,
               mode: str = "generate", hist: bool = False, hist_bins: str = "full", target: str = "act",
               repetition_penalty: float = 1.1,
               temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, mesh=None,
               max_prompt_tokens: int = 2048, edit=None, edit_scope: str = "generated", params=None,
               group_of: dict[str, str] | None = None, budget_tokens: int = 0):
    """budget_tokens > 0 (generate mode): also the generated tokens' statistics over each row's first
    `budget_tokens` alone (RecordState.budget_stats), from the same generation: the tokens are those a run with
    max_new_tokens = budget_tokens generates, since step k's token is drawn with the key folded with k and
    reads only the tokens before it (see test_stability_more)."""
    if mode not in ("generate", "teacher_forced"):
      raise ValueJaxError(f"record mode {mode!r} is unknown", fix="use 'generate' or 'teacher_forced'")
    if budget_tokens and (mode != "generate" or not 0 < budget_tokens < max_new_tokens):
      raise ValueJaxError(f"a token budget of {budget_tokens} in {mode} mode with max_new_tokens {max_new_tokens}",
                          fix="a budget is a count of generated tokens below max_new_tokens, in generate mode")
    if batch_size < 1:
      raise ValueJaxError(f"batch size must be positive, got {batch_size}")
    self.model, self.groups = model, tuple(groups)
    if len(set(self.groups)) != len(self.groups):
      raise ValueJaxError(f"group names repeat: {self.groups}")
    self.batch_size, self.max_new_tokens, self.mode = batch_size, max_new_tokens, mode
    self.stats_spec = StatsSpec(len(self.groups), hist=hist, target=target, hist_bins=hist_bins,
                                budget=int(budget_tokens))
    self.sampling = Sampling(temperature, top_p, repetition_penalty)
    self.seed, self.max_prompt_tokens = seed, max_prompt_tokens
    self.edit, self.edit_scope = edit, edit_scope
    # The statistics group of a prompt (by id) when it is not the prompt's own (the halves of `split_halves`):
    # the prompts, their ids and their texts stay as they are, only the sums they count towards change.
    self.group_of = dict(group_of or {})
    cfg, tok = model.config, model.tokenizer
    params = model.params if params is None else params
    special = special_ids(tok, cfg)
    self.bos = special.bos
    # Every batch runs as `batch_size` rows (a short last one gets empty rows): one compile per length bucket.
    if mode == "generate":
      self.engine = Generator(params, cfg, mesh=mesh, pad_id=special.pad, eos_ids=special.eos,
                              batch_buckets=(batch_size,))
    else:
      self.engine = TeacherForcer(params, cfg, mesh=mesh, pad_id=special.pad, batch_buckets=(batch_size,))

  def _encode(self, prompts: Sequence[Prompt]) -> list[list[int]]:
    out = []
    for p in prompts:
      if self._group(p) not in self.groups:
        raise ValueJaxError(f"prompt {p.id!r} has group {self._group(p)!r}, which is not recorded",
                            fix=f"groups: {', '.join(self.groups)}")
      ids = encode_prompt(self.model.tokenizer, p, self.bos)
      if len(ids) > self.max_prompt_tokens:
        raise PromptTooLong(p, len(ids), self.max_prompt_tokens)
      out.append(ids)
    return out

  def _group(self, p: Prompt) -> str:
    return self.group_of.get(p.id, p.group)

  def batches(self, prompts: Sequence[Prompt]) -> list[list[tuple[Prompt, list[int]]]]:
    """Deterministic batches of (prompt, token ids): sorted by length (less padding, fewer buckets)."""
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
      dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
      raise ValueJaxError(f"prompt ids repeat: {dup}", fix="give every prompt a unique id")
    encoded = self._encode(prompts)
    order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), i))
    pairs = [(prompts[i], encoded[i]) for i in order]
    return [pairs[i:i + self.batch_size] for i in range(0, len(pairs), self.batch_size)]

  def new_state(self) -> RecordState:
    cfg = self.model.config
    spec = self.stats_spec
    zeros = lambda: NeuronStats.zeros(self.groups, cfg.num_layers, cfg.intermediate_size, spec.hist, spec.hist_bins)
    return RecordState(zeros(), zeros() if self.mode == "generate" else None, {},
                       budget_stats=zeros() if spec.budget else None)

  def run(self, prompts: Sequence[Prompt], state: RecordState | None = None,
          on_batch: Callable[[RecordState], None] | None = None, progress: bool = True) -> RecordState:
    """Processes every batch not yet in `state`; calls `on_batch(state)` after each one."""
    batches = self.batches(prompts)
    state = state or self.new_state()
    if state.batches_done > len(batches):
      raise ValueJaxError(f"the checkpoint has {state.batches_done} batches done but the data has only "
                          f"{len(batches)}", fix="resume with the same data and batch size, or start afresh")
    bar = None
    if progress:
      from tqdm.auto import tqdm
      bar = tqdm(total=len(batches), initial=state.batches_done, desc=f"record ({self.mode})", unit="batch")
    tok = self.model.tokenizer
    for index in range(state.batches_done, len(batches)):
      batch = batches[index]
      t0 = time.perf_counter()
      ids, mask = pack_rows([row for _, row in batch], pad_id=self.engine.pad_id, side="left")
      groups = np.array([self.groups.index(self._group(p)) for p, _ in batch], np.int32)
      if self.mode == "generate":
        out = self.engine(ids, mask, self.max_new_tokens, sampling=self.sampling, seed=self.seed + index,
                          group_ids=groups, stats=self.stats_spec, edit=self.edit, edit_scope=self.edit_scope)
        prompt_stats, gen_stats = state.prompt_stats.add(out.prompt_stats), state.gen_stats.add(out.gen_stats)
        budget_stats = None if state.budget_stats is None else state.budget_stats.add(out.budget_stats)
        texts = dict(state.texts)
        for (p, _), row, n in zip(batch, out.tokens, out.lengths):
          texts[p.id] = tok.decode(row[:n].tolist(), skip_special_tokens=True)
        new_tokens = int(mask.sum() + out.lengths.sum())
      else:
        st = self.engine(ids, mask, groups, self.stats_spec, edit=self.edit)
        prompt_stats, gen_stats, budget_stats, texts = state.prompt_stats.add(st), None, None, state.texts
        new_tokens = int(mask.sum())
      for what, st in (("prompt", prompt_stats), ("generated", gen_stats)):
        _check_finite(st, what, index, len(batches), [p.id for p, _ in batch])
      dt = time.perf_counter() - t0
      # A new state object per batch: a checkpoint written by on_batch never sees a half-updated one.
      state = RecordState(prompt_stats, gen_stats, texts, index + 1, state.tokens + new_tokens, state.seconds + dt,
                          budget_stats)
      if bar is not None:
        bar.update(1)
        bar.set_postfix(tok_s=f"{state.tokens / max(state.seconds, 1e-9):.0f}")
      if on_batch is not None:
        on_batch(state)
    if bar is not None:
      bar.close()
    return state


# Split-half recording: each group's items fall at random (seeded) into two halves, recorded as groups
# "<group>#a" and "<group>#b". Statistics are sums, so a group's own are the sum of its halves' (counts exactly;
# float sums up to rounding), and each half alone locates a set whose overlap with the other's measures how
# stable the located neurons are; the two halves of one group are a contrast without any value difference.
HALVES = ("a", "b")
HALF_SEP = "#"


def half_group(group: str, half: str) -> str:
  """The recorded name of one half of a group."""
  return f"{group}{HALF_SEP}{half}"


def split_halves(groups: Sequence[str], prompts: Sequence[Prompt], seed: int) -> tuple[list[str], dict[str, str]]:
  """(half groups, {prompt id: half group}): each group's items (by item id, so the prompts of one item stay
  together) shuffled with a seed of (seed, group name), the first ceil(n / 2) in half a, the rest in half b.

  Seeded per group, so a group's halves do not change when other groups are added or dropped."""
  by_group: dict[str, list[str]] = {g: [] for g in groups}
  for p in prompts:
    if p.group not in by_group:
      raise ValueJaxError(f"prompt {p.id!r} has group {p.group!r}, which is not recorded",
                          fix=f"groups: {', '.join(groups)}")
    if p.item_id not in by_group[p.group]:
      by_group[p.group].append(p.item_id)
  half_of: dict[tuple[str, str], str] = {}
  for g, items in by_group.items():
    order = np.random.default_rng([int(seed), zlib.crc32(g.encode())]).permutation(len(items))
    cut = (len(items) + 1) // 2
    for rank, i in enumerate(order):
      half_of[g, items[i]] = HALVES[0] if rank < cut else HALVES[1]
  half_groups = [half_group(g, h) for g in groups for h in HALVES]
  return half_groups, {p.id: half_group(p.group, half_of[p.group, p.item_id]) for p in prompts}


def _select(stats: NeuronStats, index: Sequence[int], names: Sequence[str]) -> NeuronStats:
  idx = np.asarray(index, np.int64)
  return NeuronStats(tuple(names), stats.tokens[idx], stats.items[idx], stats.count[idx], stats.s1[idx],
                     stats.s2[idx], None if stats.hist is None else stats.hist[idx], stats.hist_edges)


def half_names(stats: NeuronStats) -> list[str]:
  """The groups whose halves `stats` holds, in order; an error when it is not split-half statistics."""
  names = list(stats.group_names)
  groups = [n.rpartition(HALF_SEP)[0] for n in names[::len(HALVES)]]
  if names != [half_group(g, h) for g in groups for h in HALVES]:
    raise ValueJaxError(f"statistics of groups {names[:4]}... are not split-half statistics",
                        fix="record with record.halves = True")
  return groups


def half_stats(stats: NeuronStats, half: str) -> NeuronStats:
  """One half's statistics alone, under the groups' own names (what a locator reads)."""
  groups = half_names(stats)
  return _select(stats, [stats.group(half_group(g, half)) for g in groups], groups)


def join_halves(stats: NeuronStats) -> NeuronStats:
  """Each group's statistics as the sum of its halves', under the group's own name."""
  out = half_stats(stats, HALVES[0])
  for half in HALVES[1:]:
    out = out.add(half_stats(stats, half))
  return out


def _check_finite(stats: NeuronStats | None, what: str, index: int, n_batches: int, ids: list[str]) -> None:
  """A NaN or inf activation would make every later sum meaningless: stop at the batch that produced it."""
  if stats is None:
    return
  for name in ("s1", "s2"):
    bad = ~np.isfinite(getattr(stats, name))
    if bad.any():
      g, layer, neuron = (int(x) for x in np.argwhere(bad)[0])
      raise ValueJaxError(f"batch {index + 1} of {n_batches} (prompts {', '.join(ids[:3])}"
                          f"{', ...' if len(ids) > 3 else ''}) gave a non-finite activation over {what} tokens: "
                          f"group {stats.group_names[g]}, layer {layer}, neuron {neuron}",
                          fix="check the model's weights and dtype (float16 overflows; use float32 or bfloat16)")
