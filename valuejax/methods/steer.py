"""Steering you can try in one line: a few prompts answered unedited, with one pair's located neurons steered
toward each aspect (enhance and reverse), and with random neurons of the same per-layer counts steered the
same way, side by side. Every variant goes through one Generator with the edit as data: one compile."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from valuejax import data as vdata
from valuejax.errors import ValueJaxError


@dataclasses.dataclass(frozen=True)
class SteeredAnswers:
  prompt: str
  answers: dict[str, str]  # variant name -> answer, "unedited" first


def steer_answers(model: Any, neuron_set: Any, plus: str, minus: str, prompts: Sequence[str], *, gamma: float = 2.0,
                  steer_value: str = "p", keep_prob: float = 0.9, controls: int = 1, max_new_tokens: int = 64,
                  chat: bool = True, repetition_penalty: float = 1.1, seed: int = 0) -> list[SteeredAnswers]:
  """Answers to `prompts` unedited, under enhance (toward `plus`) and reverse (toward `minus`) steering of
  the set's neurons at `gamma`, and under `controls` random size- and layer-matched copies of the enhance
  edit (greedy decoding, so differences come from the edits alone). As in the authors' hook, the clamp
  applies at every generated token and each push with probability `keep_prob`, one draw per neuron, layer and
  decode step shared by all prompts (seeded by `seed`): the draws a prompt's answer sees do not depend on
  the other prompts."""
  from valuejax.engine import pack_rows, special_ids
  from valuejax.engine.generate import Generator, Sampling
  from valuejax.engine.record import encode_prompt
  from valuejax.intervene import SteerSet, baseline, control_edits, steering
  if not prompts:
    raise ValueJaxError("no prompt to answer", "--prompt", "give one or more --prompt=...")
  for g in (plus, minus):
    if g not in neuron_set.names:
      raise ValueJaxError(f"the neuron set has no group {g!r}", "--pair", f"groups: {', '.join(neuron_set.names)}")
  shape = (neuron_set.num_layers, neuron_set.num_neurons)
  side = lambda g: SteerSet.from_arrays(neuron_set.mask(g), neuron_set[g].score_map(steer_value),
                                        neuron_set[g].score_map("delta"), shape)
  enhance = steering(side(plus), side(minus), gamma, mode="enhance", keep_prob=keep_prob, seed=seed,
                     name=f"enhance {plus} (gamma {gamma:g})")
  reverse = steering(side(plus), side(minus), gamma, mode="reverse", keep_prob=keep_prob, seed=seed,
                     name=f"reverse: toward {minus} (gamma {gamma:g})")
  variants = [dataclasses.replace(baseline(shape, name="unedited"), scope=enhance.scope), enhance, reverse]
  variants += [dataclasses.replace(c, name=f"random neurons, same counts, enhanced ({i + 1})")
               for i, c in enumerate(control_edits(enhance, controls, seed=seed))]
  ids = special_ids(model.tokenizer, model.config)
  rows = [encode_prompt(model.tokenizer, vdata.Prompt(p, "steer", str(i), chat=chat), ids.bos)
          for i, p in enumerate(prompts)]
  tokens, mask = pack_rows(rows, pad_id=ids.pad)
  generate = Generator(model.params, model.config, pad_id=ids.pad, eos_ids=list(ids.eos))
  sampling = Sampling(repetition_penalty=repetition_penalty)
  answers: list[dict[str, str]] = [{} for _ in prompts]
  for e in variants:
    out = generate(tokens, mask, max_new_tokens, sampling=sampling, seed=seed, **e.generate_kwargs())
    for a, row, n in zip(answers, out.tokens, out.lengths):
      a[e.name] = model.tokenizer.decode(row[:n].tolist(), skip_special_tokens=True).strip()
  return [SteeredAnswers(p, a) for p, a in zip(prompts, answers)]


def format_answers(results: Sequence[SteeredAnswers]) -> str:
  """The answers as text: one block per prompt, one labelled paragraph per variant."""
  out = []
  for i, r in enumerate(results, 1):
    out.append(f"== prompt {i}: {r.prompt}")
    for name, text in r.answers.items():
      out.append(f"-- {name}:\n{text or '(empty)'}")
    out.append("")
  return "\n".join(out)
