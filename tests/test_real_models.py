"""The real default model (SmolLM2-135M-Instruct, from PyPI) against transformers: logits and greedy generation."""

import copy

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.real_model

PROMPTS = ["What is the capital of France?", "Write a haiku about rain.",
           "Should I tell my friend the truth even if it hurts?", "List three fruits."]


@pytest.fixture(scope="module")
def smollm2_and_hf(smollm2):
  """The session's SmolLM2 (conftest), transformers' model of the same converted folder, and a padded batch."""
  import transformers
  model = smollm2
  hf = transformers.AutoModelForCausalLM.from_pretrained(model.source, dtype=torch.float32).eval()
  tok = copy.deepcopy(model.tokenizer)  # the session's tokenizer keeps its own padding side
  tok.padding_side = "left"
  texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
           for p in PROMPTS]
  enc = tok(texts, return_tensors="np", padding=True, add_special_tokens=False)
  return model, hf, enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)


def test_logits_match_transformers(smollm2_and_hf):
  import jax.numpy as jnp
  from valuejax.models.forward import forward, positions_from_mask
  model, hf, ids, mask = smollm2_and_hf
  logits, _ = forward(model.params, model.config, jnp.asarray(ids), jnp.asarray(mask))
  pos = np.asarray(positions_from_mask(jnp.asarray(mask)))
  with torch.no_grad():
    ref = hf(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
             position_ids=torch.tensor(pos, dtype=torch.long)).logits.numpy()
  real = mask.astype(bool)
  # 30 float32 layers accumulate rounding differently in XLA and PyTorch: 1e-3 on logits of magnitude ~20.
  assert np.abs(np.asarray(logits)[real] - ref[real]).max() < 1e-3
  assert (np.asarray(logits)[real].argmax(-1) == ref[real].argmax(-1)).all()


def test_greedy_generation_matches_transformers_token_for_token(smollm2_and_hf):
  from valuejax.engine.generate import Sampling, generate
  model, hf, ids, mask = smollm2_and_hf
  pad = model.tokenizer.pad_token_id
  out = generate(model.params, model.config, ids, mask, 32, sampling=Sampling(repetition_penalty=1.1), pad_id=pad)
  with torch.no_grad():
    ref = hf.generate(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                      max_new_tokens=32, do_sample=False, repetition_penalty=1.1, pad_token_id=pad)
  ref = ref[:, ids.shape[1]:].numpy()
  eos = set(model.config.eos_token_ids)
  for i in range(len(PROMPTS)):
    n = next((j for j, t in enumerate(ref[i]) if t in eos), ref.shape[1])
    assert out.lengths[i] == n
    assert out.tokens[i][:n].tolist() == ref[i][:n].tolist()
