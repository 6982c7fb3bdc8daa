"""Throughput of statistics recording: valuejax against transformers + PyTorch forward hooks, in one process.

The peer is the papers' recipe: `model.generate` with forward hooks on every MLP `act_fn` that reduce the
activations of each new token into per-neuron sums. Both sides compute the same statistics on the same
prompts and token counts. Prints tokens/s, the ratio, a raw decode-step floor measured here, and memory.

  python benchmarks/bench_engine.py                       # SmolLM2-135M on this machine
  python benchmarks/bench_engine.py --batches 32 --new 512 --repeats 1   # answers as long as the papers'
  python benchmarks/bench_engine.py --batches 32,128 --new 128 --dtype bfloat16   # on an accelerator
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np


def rss_mib() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int) -> float:
  """Median wall time of `repeats` calls after one warm-up call (compilation, caches)."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def make_prompts(model, n: int, seed: int = 0) -> list[list[int]]:
  """n questions, encoded as the engine encodes prompts (chat template, or plain text after <bos>)."""
  from valuejax.engine.record import Prompt, encode_prompt, prompt_bos
  topics = ["honesty at work", "caring for parents", "trying a new city", "saving money", "helping a neighbour",
            "following tradition", "winning a contest", "protecting nature", "a risky startup", "school rules"]
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    q = f"In two paragraphs, what would you do about {topics[rng.integers(len(topics))]}? Case {i}."
    out.append(encode_prompt(model.tokenizer, Prompt(q, "all", f"q{i}", chat=True),
                             prompt_bos(model.config)))
  return out


def left_padded(rows, pad):
  width = max(map(len, rows))
  ids = np.full((len(rows), width), pad, np.int32)
  mask = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    ids[i, width - len(r):], mask[i, width - len(r):] = r, 1
  return ids, mask


class HookStats:
  """The peer's reduction: per-layer count / sum / sum of squares of act_fn outputs for the counted tokens."""

  def __init__(self, torch, model, num_layers, width, skip_prompt: bool):
    self.torch, self.skip_prompt = torch, skip_prompt
    device = next(model.parameters()).device  # the sums live where the activations are (cuda on a GPU)
    self.count = torch.zeros(num_layers, width, dtype=torch.int64, device=device)
    self.s1 = torch.zeros(num_layers, width, dtype=torch.float64, device=device)
    self.s2 = torch.zeros(num_layers, width, dtype=torch.float64, device=device)
    self.weight = None
    self.handles = [layer.mlp.act_fn.register_forward_hook(self._hook(i)) for i, layer in
                    enumerate(model.model.layers)]

  def _hook(self, layer):
    def hook(module, inputs, out):
      if self.skip_prompt and out.shape[1] > 1:  # prefill: prompt tokens are not counted
        return
      a = out if self.weight is None else out * self.weight[..., None]
      self.count[layer] += (a > 0).sum((0, 1))
      self.s1[layer] += a.sum((0, 1)).double()
      self.s2[layer] += (a * a).sum((0, 1)).double()
    return hook

  def remove(self):
    for h in self.handles:
      h.remove()


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--model", default="smollm2-135m-instruct")
  ap.add_argument("--batches", default="8,32", help="generation batch sizes")
  ap.add_argument("--new", type=int, default=64, help="new tokens per prompt")
  ap.add_argument("--tf-batch", type=int, default=8)
  ap.add_argument("--tf-len", type=int, default=128)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--dtype", default="float32")
  ap.add_argument("--layout", default="auto", help="the weights' one layout: auto (as the launchers), stacked, "
                  "decode")
  ap.add_argument("--threads", type=int, default=os.cpu_count())
  ap.add_argument("--rss-prompts", type=int, default=32, help="prompts of the first of three memory rounds")
  ap.add_argument("--skip-peer", action="store_true")
  ap.add_argument("--json", default=None, help="also write the results here")
  args = ap.parse_args(argv)

  import jax
  import jax.numpy as jnp
  import torch
  import transformers

  import valuejax
  from valuejax.engine.generate import Generator, Sampling, StatsSpec, TeacherForcer
  from valuejax.engine.record import Prompt, Recorder
  from valuejax.models.forward import forward, unstack_layers

  torch.set_num_threads(args.threads)
  accel = jax.default_backend() != "cpu"
  device = "cuda" if accel and torch.cuda.is_available() else "cpu"
  model = valuejax.load_model(args.model, dtype=args.dtype, layout=args.layout)
  cfg, tok = model.config, model.tokenizer
  tdtype = getattr(torch, args.dtype)
  hf = transformers.AutoModelForCausalLM.from_pretrained(model.source, dtype=tdtype).eval().to(device)
  pad = tok.pad_token_id if tok.pad_token_id is not None else 0
  sampling = Sampling(repetition_penalty=1.1)
  results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} on "
                        f"{jax.devices()[0].device_kind}, torch {torch.__version__} on {device}",
             "model": args.model, "dtype": args.dtype, "layout": model.layout, "rows": []}
  print(results["machine"], f"({model.layout} layout)", flush=True)

  def row(name, peer, ours, floor=None, note=""):
    r = {"case": name, "peer_tok_s": peer, "valuejax_tok_s": ours, "ratio": ours / peer if peer else None,
         "floor_tok_s": floor, "note": note}
    results["rows"].append(r)
    ratio = f"{ours / peer:5.2f}x" if peer else "   - "
    fl = f"  floor {floor:8.1f} tok/s ({ours / floor:4.0%} of it)" if floor else ""
    print(f"{name:42s} peer {peer or 0:8.1f}  valuejax {ours:8.1f} tok/s  {ratio}{fl} {note}", flush=True)

  gen = Generator(model.params, cfg, pad_id=pad, eos_ids=())  # no EOS: every row makes exactly `new` tokens
  # The same engine without running the prompts' shared prefix (system prompt + template) once.
  gen_unshared = Generator(model.params, cfg, pad_id=pad, eos_ids=(), share_prefix=False)
  for b in [int(x) for x in args.batches.split(",")]:
    ids, mask = left_padded(make_prompts(model, b), pad)
    tokens = b * args.new
    groups = np.arange(b, dtype=np.int32) % 2

    def ours(engine=gen):
      out = engine(ids, mask, args.new, sampling=sampling, group_ids=groups, stats=StatsSpec(2))
      jax.block_until_ready(out.gen_stats)
    # Raw floor: one step of b single tokens through all layers + unembedding, no attention cache: every
    # weight is read once, which any decoder must do per generated token. Both frameworks are probed, before
    # and after valuejax's runs (this machine's speed drifts), and the fastest probe is the floor.
    step = jax.jit(lambda p, t: forward(p, cfg, t)[0])
    unstacked = unstack_layers(model.params)
    tok1 = jnp.ones((b, 1), jnp.int32)
    ttok1 = torch.ones((b, 1), dtype=torch.long, device=device)

    def torch_step():
      with torch.no_grad():
        hf(input_ids=ttok1, use_cache=False)
      if device == "cuda":
        torch.cuda.synchronize()

    def floor_step():
      t = timed(lambda: step(unstacked, tok1).block_until_ready(), 5)
      return t if args.skip_peer else min(t, timed(torch_step, 5))

    t_step = floor_step()
    t_ours = timed(ours, args.repeats)
    t_unshared = timed(lambda: ours(gen_unshared), args.repeats)

    def prompt_pass():  # the prompts and one decode step (its statistics count the first new token)
      out = gen(ids, mask, 1, sampling=sampling, group_ids=groups, stats=StatsSpec(2))
      jax.block_until_ready(out.gen_stats)
    t_prompt = timed(prompt_pass, args.repeats)
    shared = os.path.commonprefix([list(r[m.astype(bool)]) for r, m in zip(ids, mask)])
    t_step = min(t_step, floor_step())

    t_peer = None
    if not args.skip_peer:
      tids, tmask = torch.tensor(ids, dtype=torch.long, device=device), torch.tensor(mask, device=device)

      def peer():
        hs = HookStats(torch, hf, cfg.num_layers, cfg.intermediate_size, skip_prompt=True)
        with torch.no_grad():
          hf.generate(input_ids=tids, attention_mask=tmask, max_new_tokens=args.new, min_new_tokens=args.new,
                      do_sample=False, repetition_penalty=1.1, pad_token_id=pad)
        hs.remove()
        if device == "cuda":
          torch.cuda.synchronize()
      t_peer = timed(peer, args.repeats)
    # The floor leaves the prompts out; with every decode step after the first at the floor, this is the most
    # that valuejax's prompt pass allows.
    ceiling = tokens / (t_prompt + (args.new - 1) * t_step)
    row(f"generate + statistics, batch {b}, {args.new} new", tokens / t_peer if t_peer else None, tokens / t_ours,
        floor=b / t_step, note=f"(prompts {int(mask.sum(1).min())}-{mask.shape[1]} tokens, {len(shared)} shared)")
    results["rows"][-1].update(prompt_pass_s=t_prompt, ceiling_tok_s=ceiling)
    step_ms = (t_ours - t_prompt) / (args.new - 1) * 1e3
    print(f"  prompt pass {t_prompt:.2f} s; decode steps at the floor would give {ceiling:.1f} tok/s "
          f"({ceiling * t_step / b:.0%} of the floor); valuejax's decode step {step_ms:.1f} ms vs the floor's "
          f"{t_step * 1e3:.1f} ms", flush=True)
    row("  valuejax without prefix sharing", tokens / t_peer if t_peer else None, tokens / t_unshared,
        floor=b / t_step)

  # Teacher-forced statistics (LAPE): every token of tf_batch x tf_len.
  b, t = args.tf_batch, args.tf_len
  rng = np.random.default_rng(1)
  edge = min(100, cfg.vocab_size // 4)  # clear of the special tokens at either end of the vocabulary
  ids = rng.integers(edge, cfg.vocab_size - edge, size=(b, t)).astype(np.int32)
  mask = np.ones_like(ids)
  groups = np.arange(b, dtype=np.int32) % 2
  tf = TeacherForcer(model.params, cfg, buckets=(t,))
  t_tf = timed(lambda: jax.block_until_ready(tf(ids, mask, groups, StatsSpec(2))), args.repeats + 1)
  plain = jax.jit(lambda p, i, m: forward(p, cfg, i, m)[0])
  plain_nologits = jax.jit(lambda p, i, m: forward(p, cfg, i, m, capture="act", logits="none")[1])
  t_plain = timed(lambda: plain(model.params, ids, mask).block_until_ready(), args.repeats + 1)
  t_act = timed(lambda: plain_nologits(model.params, ids, mask).block_until_ready(), args.repeats + 1)
  t_peer = None
  if not args.skip_peer:
    tids, tmask = torch.tensor(ids, dtype=torch.long, device=device), torch.tensor(mask, device=device)

    def peer_tf():
      hs = HookStats(torch, hf, cfg.num_layers, cfg.intermediate_size, skip_prompt=False)
      with torch.no_grad():
        hf(input_ids=tids, attention_mask=tmask)
      hs.remove()
      if device == "cuda":
        torch.cuda.synchronize()
    t_peer = timed(peer_tf, args.repeats + 1)
  n = b * t
  row(f"teacher-forced statistics, {b} x {t}", n / t_peer if t_peer else None, n / t_tf)
  row("  valuejax plain forward (with logits)", None, n / t_plain)
  row("  valuejax forward returning [L,B,T,F] acts", None, n / t_act)
  print(f"statistics cost over the plain forward: {t_tf / t_plain - 1:+.1%} (the statistics pass skips the "
        f"unembedding, which the plain forward computes)")
  results["stats_overhead_vs_plain_forward"] = t_tf / t_plain - 1

  # Memory: current RSS after recording 1x, 2x and 4x as many prompts (same shapes) must stay flat.
  rec = Recorder(model, groups=["a", "b"], batch_size=8, max_new_tokens=16)
  base = [Prompt(f"Tell me about value number {i}.", "ab"[i % 2], f"p{i}") for i in range(args.rss_prompts)]
  mem = []
  for k in (1, 2, 4):
    prompts = [Prompt(p.text, p.group, f"{p.item_id}-{j}") for j in range(k) for p in base]
    rec.run(prompts, progress=False)
    mem.append((len(prompts), rss_mib()))
  print("RSS after recording: " + ", ".join(f"{n} prompts {m:.0f} MiB" for n, m in mem) +
        f"; peak RSS {peak_rss_mib():.0f} MiB")
  results["rss_mib"] = mem
  results["peak_rss_mib"] = peak_rss_mib()
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
