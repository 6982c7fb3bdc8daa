"""Recording over prompt lists: deterministic batches, exact resume, texts, teacher-forced mode."""

import numpy as np
import pytest

from tests import tiny_models
from valuejax.engine.record import Prompt, RecordState, Recorder
from valuejax.errors import ValueJaxError


def _prompts(n=7):
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    words = " ".join(f"w{j}" for j in rng.integers(0, 80, size=3 + i % 4))
    group = ["up", "down"][i % 2]
    if i % 3:
      out.append(Prompt(words, group, f"p{i}", chat=True))
    else:
      out.append(Prompt(words, group, f"p{i}"))
  return out


@pytest.mark.slow  # compiles generation or scoring programs of its own: seconds each
def test_resume_from_any_batch_is_exact():
  model = tiny_models.tiny_model_object("llama")
  rec = Recorder(model, groups=["up", "down"], batch_size=2, max_new_tokens=5, hist=True)
  prompts = _prompts()
  full = rec.run(prompts, progress=False)
  assert full.batches_done == 4 and set(full.texts) == {p.id for p in prompts}
  saved = []
  rec.run(prompts, on_batch=lambda s: saved.append(RecordState.from_arrays(s.to_arrays())), progress=False)
  for k in (1, 3):
    resumed = rec.run(prompts, state=saved[k - 1], progress=False)
    assert resumed.prompt_stats == full.prompt_stats and resumed.gen_stats == full.gen_stats
    assert resumed.texts == full.texts
  assert full.prompt_stats.items.tolist() == [4, 3]
  # Generated-token statistics count exactly the response tokens the engine reported (EOS excluded).
  assert full.tokens == full.prompt_stats.tokens.sum() + full.gen_stats.tokens.sum()
  assert full.gen_stats.tokens.sum() > 0
  # The short last batch (one prompt) ran as batch_size rows: no compile of its own.
  assert {key[0] for key in rec.engine._compiled} == {2}


def test_teacher_forced_counts_every_prompt_token():
  model = tiny_models.tiny_model_object("gemma")
  rec = Recorder(model, groups=["up", "down"], batch_size=3, mode="teacher_forced")
  prompts = _prompts(5)
  state = rec.run(prompts, progress=False)
  assert state.gen_stats is None
  lengths = [len(ids) for batch in rec.batches(prompts) for _, ids in batch]
  assert state.prompt_stats.tokens.sum() == sum(lengths)
  assert {key[0] for key in rec.engine._compiled} == {3}  # batches of 3 and 2 prompts
  # Gemma prompts without a chat template start with <bos>.
  assert all(ids[0] == model.config.bos_token_id for b in rec.batches(prompts) for _, ids in b)


def test_bad_prompts_are_reported():
  model = tiny_models.tiny_model_object("llama")
  rec = Recorder(model, groups=["up"], batch_size=2, max_new_tokens=2)
  with pytest.raises(ValueJaxError, match="group 'down'"):
    rec.run([Prompt("w1", "down", "a")], progress=False)
  with pytest.raises(ValueJaxError, match="repeat"):
    rec.run([Prompt("w1", "up", "a"), Prompt("w2", "up", "a")], progress=False)
  with pytest.raises(ValueJaxError, match="no text"):
    rec.run([Prompt("", "up", "a")], progress=False)
