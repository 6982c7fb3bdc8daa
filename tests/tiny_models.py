"""Tiny random Hugging Face models of every supported architecture, built in-process for parity tests.

Weights are re-drawn with a large spread so that every switch (offsets, soft-caps, windows) matters.
"""

from __future__ import annotations

import numpy as np

ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2")

_COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
               pad_token_id=0, bos_token_id=1, eos_token_id=2)


def hf_config(arch: str):
  import transformers as t
  if arch == "llama":
    return t.LlamaConfig(**_COMMON, rope_parameters={
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16}, tie_word_embeddings=False)
  if arch == "mistral":
    return t.MistralConfig(**_COMMON, sliding_window=5, head_dim=16)
  if arch == "qwen2":
    return t.Qwen2Config(**_COMMON, tie_word_embeddings=True)
  if arch == "qwen3":
    return t.Qwen3Config(**_COMMON, head_dim=24)
  if arch == "gemma":
    return t.GemmaConfig(**_COMMON, head_dim=16)
  if arch == "gemma2":
    return t.Gemma2Config(**_COMMON, head_dim=16, sliding_window=5, query_pre_attn_scalar=24,
                          attn_logit_softcapping=5.0, final_logit_softcapping=3.0)
  if arch == "gemma3_text":
    c = dict(_COMMON, num_hidden_layers=4)
    return t.Gemma3TextConfig(**c, head_dim=16, sliding_window=5, query_pre_attn_scalar=16,
                              layer_types=["sliding_attention", "sliding_attention", "full_attention",
                                           "sliding_attention"],
                              rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                                               "full_attention": {"rope_type": "default", "rope_theta": 1e4}})
  if arch == "gpt2":
    return t.GPT2Config(vocab_size=96, n_embd=64, n_layer=3, n_head=4, n_positions=128, n_inner=80,
                        bos_token_id=1, eos_token_id=2)
  raise KeyError(arch)


def hf_model(arch: str, seed: int = 0):
  """A torch model in eval mode with randomised weights."""
  import torch
  import transformers as t
  torch.manual_seed(seed)
  model = t.AutoModelForCausalLM.from_config(hf_config(arch), attn_implementation="eager").eval()
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      std = 0.2 if p.ndim >= 2 else 0.25
      p.copy_(torch.randn(p.shape, generator=gen) * std + (1.0 if _is_plain_norm(arch, name, p) else 0.0))
  return model


def _is_plain_norm(arch: str, name: str, p) -> bool:
  """Norm weights multiply (mean 1), except Gemma's, which are offsets from 1 (mean 0)."""
  return p.ndim == 1 and ("norm" in name or ".ln_" in name) and not arch.startswith("gemma")


def state_dict_numpy(model) -> dict[str, np.ndarray]:
  return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def valuejax_model(arch: str, seed: int = 0, dtype=np.float32):
  """(hf_model, config, params) for the same random weights."""
  import jax
  from valuejax.models.config import ModelConfig
  from valuejax.models.convert import params_from_hf
  model = hf_model(arch, seed)
  cfg = ModelConfig.from_hf(model.config)
  params = jax.tree.map(jax.numpy.asarray, params_from_hf(state_dict_numpy(model), cfg, dtype))
  return model, cfg, params


def padded_batch(lengths=(7, 11, 4), total: int = 11, vocab: int = 96, left=(True, False, True), seed: int = 0):
  """Random token rows with a mix of left and right padding; returns (ids, mask) as int32 numpy."""
  rng = np.random.default_rng(seed)
  ids = np.zeros((len(lengths), total), np.int32)
  mask = np.zeros((len(lengths), total), np.int32)
  for i, (n, is_left) in enumerate(zip(lengths, left)):
    row = rng.integers(3, vocab, size=n)
    sl = slice(total - n, total) if is_left else slice(0, n)
    ids[i, sl], mask[i, sl] = row, 1
  return ids, mask


def shared_prefix_batch(prefix_len=19, suffix_lengths=(5, 9, 1, 7), seed=4):
  """Rows that all start with the same `prefix_len` tokens, in a mix of left and right padding."""
  rng = np.random.default_rng(seed)
  prefix = rng.integers(3, 96, size=prefix_len)
  total = prefix_len + max(suffix_lengths) + 2
  ids = np.zeros((len(suffix_lengths), total), np.int32)
  mask = np.zeros_like(ids)
  for i, n in enumerate(suffix_lengths):
    row = np.concatenate([prefix, rng.integers(3, 96, size=n)])
    sl = slice(total - len(row), total) if i % 2 == 0 else slice(0, len(row))
    ids[i, sl], mask[i, sl] = row, 1
  return ids, mask


CHAT_TEMPLATE = ("{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<s> assistant : {% endif %}")


def tiny_tokenizer(vocab: int = 96):
  """A word-level tokenizer over `vocab` ids (ids 0-2: <pad> <s> </s>) with a simple chat template."""
  from tokenizers import Tokenizer, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast
  words = ["<pad>", "<s>", "</s>", "<unk>", "user", "assistant", "system", ":"]
  words += [f"w{i}" for i in range(vocab - len(words))]
  tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                 unk_token="<unk>")
  fast.chat_template = CHAT_TEMPLATE
  return fast


def tiny_model_object(arch: str = "llama", seed: int = 0):
  """A `valuejax.models.loading.Model`-like object (config, params, tokenizer) without touching disk."""
  import types
  model, cfg, params = valuejax_model(arch, seed)
  return types.SimpleNamespace(config=cfg, params=params, tokenizer=tiny_tokenizer(), hf_model=model)


# float32 unit roundoff: one rounded operation is off by at most this fraction of its result.
F32_U = 2.0 ** -24


def reorder_atol(values, terms: int) -> float:
  """Bound on |a - b| for float32 values computed by the same arithmetic in two summation orders.

  A sum of n terms rounded in any order is off by at most n * u times the largest magnitude it reaches
  (u = 2^-24); `terms` counts the additions on the longest path to a value (e.g. layers * the longest
  dot product, plus the tokens a statistic sums over), and the values' own largest magnitude, at least 1
  (partial sums of mixed signs pass through the hidden states' unit scale), stands for that scale. A bound
  from the arithmetic, so it holds on any machine, not a margin over one run.
  """
  return float(terms * F32_U * max(float(np.max(np.abs(np.asarray(values, np.float64)))), 1.0))


def forward_terms(cfg) -> int:
  """The additions on the longest path through the decoder: every layer's longest dot product."""
  return cfg.num_layers * max(cfg.hidden_size, cfg.intermediate_size, cfg.num_heads * cfg.head_dim)


def save_word_level_llama(folder: str, fast_tokenizer, vocab_size: int) -> str:
  """A random 3-layer llama (hidden 32, 48 neurons per layer) saved with `fast_tokenizer` as an HF folder,
  for launcher tests that load a model by path."""
  import torch
  import transformers as t
  fast_tokenizer.save_pretrained(folder)
  cfg = t.LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
  torch.manual_seed(0)
  model = t.LlamaForCausalLM(cfg).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.normal_(0.0, 0.3)
      if p.ndim == 1:
        p.add_(1.0)  # norm weights around 1
  model.save_pretrained(folder, safe_serialization=True)
  return folder
