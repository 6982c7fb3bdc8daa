"""Scoring under many edits: valuejax against transformers + PyTorch forward hooks, in one process.

What a causal test spends its time on: one located edit and its random controls, each scored on the same
forced choices (the value-aligned against the opposing action, by length-normalised likelihood). The peer is
the papers' recipe: a forward hook on every MLP `act_fn` that scales the edited neurons, and one full forward
pass over every (prompt + option) row per edit. valuejax scores the edits with `forced_choice_many` (edits
vmapped a chunk at a time; each prompt once per edit, the options on its cache; the output layer on scored
tokens only). Both sides score the same token ids; the script prints seconds per edit, the ratio, and the
largest difference between the two sides' P(aligned) as a check that they compute the same thing.

  python benchmarks/bench_scoring.py                          # SmolLM2-135M, ValueExploration x5/0 edits
  python benchmarks/bench_scoring.py --model gemma3-270m --edits 32
  python benchmarks/bench_scoring.py --lang zh --scope generated  # steering-style edits of the options only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # bench_engine beside this file; configs/ at the root
from bench_engine import peak_rss_mib  # noqa: E402


def vexp_edits(shape, n: int, fraction: float, scope: str, seed: int = 0):
  """One ValueExploration-style edit (x5 on one random set, 0 on another, each `fraction` of the neurons)
  and n - 1 of its size- and layer-matched random controls, as the study scores them."""
  from valuejax.intervene import builders
  from valuejax.intervene.controls import control_edits
  rng = np.random.default_rng(seed)
  k = max(1, int(round(fraction * shape[0] * shape[1])))
  picks = rng.choice(shape[0] * shape[1], size=2 * k, replace=False)
  support, conflict = np.zeros(shape, bool), np.zeros(shape, bool)
  support.flat[picks[:k]], conflict.flat[picks[k:]] = True, True
  edit = dataclasses.replace(builders.value_exploration(support, conflict, region="combined"), scope=scope)
  return [edit] + control_edits(edit, n - 1, seed=seed + 1)


class ScaleHooks:
  """The peer's edit: act_fn outputs times a per-layer scale, at every position or at the options' only."""

  def __init__(self, torch, model, scale: np.ndarray, option_mask=None):
    self.scale = torch.tensor(scale, dtype=torch.float32)
    self.option_mask = option_mask  # [B, T] float, 1 at option tokens (scope "generated"), or None
    self.handles = [layer.mlp.act_fn.register_forward_hook(self._hook(i))
                    for i, layer in enumerate(model.model.layers)]

  def _hook(self, layer):
    def hook(module, inputs, out):
      s = self.scale[layer]
      if self.option_mask is None:
        return out * s
      m = self.option_mask[..., None]
      return out * (m * s + (1 - m))
    return hook

  def remove(self):
    for h in self.handles:
      h.remove()


def peer_scores(torch, hf, p_rows, c_rows, edits, batch_size: int) -> np.ndarray:
  """[E, N] summed log p(option | prompt) under each edit: hooks, then full rows in right-padded batches."""
  rows = [p + c for p, c in zip(p_rows, c_rows)]
  out = np.zeros((len(edits), len(rows)))
  for e, edit in enumerate(edits):
    for start in range(0, len(rows), batch_size):
      idx = list(range(start, min(start + batch_size, len(rows))))
      width = max(len(rows[i]) for i in idx)
      ids = torch.zeros((len(idx), width), dtype=torch.long)
      attn = torch.zeros((len(idx), width), dtype=torch.long)
      target = torch.zeros((len(idx), width))
      for j, i in enumerate(idx):
        ids[j, :len(rows[i])] = torch.tensor(rows[i])
        attn[j, :len(rows[i])] = 1
        target[j, len(p_rows[i]):len(rows[i])] = 1
      hooks = ScaleHooks(torch, hf, np.asarray(edit.neurons.scale),
                         target if edit.scope == "generated" else None)
      with torch.no_grad():
        logits = hf(input_ids=ids, attention_mask=attn).logits.float()
      hooks.remove()
      lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
      out[e, idx] = (lp * target[:, 1:]).sum(1).double().numpy()
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--model", default="smollm2-135m-instruct")
  ap.add_argument("--lang", default="en", help="language of the shipped dilemmas: en or zh")
  ap.add_argument("--items", type=int, default=14, help="held-out dilemmas (each scored with both options)")
  ap.add_argument("--edits", type=int, default=16, help="one edit and edits - 1 random controls")
  ap.add_argument("--fraction", type=float, default=0.005, help="neurons per set, as a fraction of the model")
  ap.add_argument("--scope", default="all", help="all (ValueExploration) or generated (options only)")
  ap.add_argument("--batch", type=int, default=24, help="rows per batch, both sides")
  ap.add_argument("--repeats", type=int, default=2, help="timed rounds (the first also compiles)")
  ap.add_argument("--threads", type=int, default=os.cpu_count())
  ap.add_argument("--json", default=None, help="also write the results here")
  args = ap.parse_args(argv)

  import jax
  import torch
  import transformers

  import valuejax
  from configs import valueexploration
  from valuejax.evaluate import forced_choice_many
  from valuejax.evaluate.scoring import encode
  from valuejax.methods.base import METHODS
  from valuejax.metrics.forced_choice import direct_template

  torch.set_num_threads(args.threads)
  cfg = valueexploration.get_config(f"lang={args.lang}")
  cfg.model = args.model
  cfg.data.chat = not args.model.startswith("gemma")  # the base model is scored without a chat template
  model = valuejax.load_model(args.model, layout="stacked")
  hf = transformers.AutoModelForCausalLM.from_pretrained(model.source, dtype=torch.float32).eval()
  method = METHODS.get("valueexploration")
  dataset = method.load_dataset(cfg)
  items = [it for pair in method.pairs(cfg, dataset) for it in method.choice_items(cfg, dataset, pair)]
  items = items[:args.items]
  template = direct_template(cfg, model.tokenizer)
  shape = (model.config.num_layers, model.config.intermediate_size)
  edits = vexp_edits(shape, args.edits, args.fraction, args.scope)
  machine = (f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} on "
             f"{jax.devices()[0].device_kind}, torch {torch.__version__}")
  print(f"{machine}\n{args.model}, {len(items)} {args.lang} dilemmas x 2 options, {len(edits)} edits of "
        f"{int(edits[0].edited_mask().sum())} neurons, scope {args.scope}", flush=True)

  def ours():
    res = forced_choice_many(model.params, model.config, model.tokenizer, items, edits, lettered=False,
                             direct_template=template, batch_size=args.batch,
                             buckets=tuple(cfg.intervene.length_buckets) or None)
    return np.stack([r.p_aligned_norm for r in res])

  prompts = [template.format(question=it.question) for it in items]
  p_rows = [encode(model.tokenizer, p, True) for p in prompts] * 2
  c_rows = ([encode(model.tokenizer, " " + it.aligned, False) for it in items]
            + [encode(model.tokenizer, " " + it.opposing, False) for it in items])
  n = len(items)

  def peer():
    lp = peer_scores(torch, hf, p_rows, c_rows, edits, args.batch)
    counts = np.asarray([len(c) for c in c_rows])
    norm = lp / counts
    return 1 / (1 + np.exp(-(norm[:, :n] - norm[:, n:])))

  t_ours, t_peer = [], []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    p_ours = ours()
    t_ours.append(time.perf_counter() - t0)
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    p_peer = peer()
    t_peer.append(time.perf_counter() - t0)
  diff = float(np.abs(p_ours - p_peer).max())
  # first round of valuejax compiles; the best round is the steady state a long study runs at
  ours_s, peer_s = min(t_ours) / len(edits), min(t_peer) / len(edits)
  print(f"peer {peer_s:7.3f} s/edit   valuejax {ours_s:7.3f} s/edit   {peer_s / ours_s:5.2f}x   "
        f"(valuejax first round, compiling: {t_ours[0]:.1f} s)")
  print(f"largest |P(aligned) difference| between the two sides: {diff:.2e}; peak RSS {peak_rss_mib():.0f} MiB")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"machine": machine, "model": args.model, "lang": args.lang, "items": len(items),
                 "edits": len(edits), "scope": args.scope, "peer_s_per_edit": peer_s,
                 "valuejax_s_per_edit": ours_s, "ratio": peer_s / ours_s, "first_round_s": t_ours[0],
                 "max_abs_diff": diff, "peak_rss_mib": peak_rss_mib()}, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
