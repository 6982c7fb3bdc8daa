"""GGUF files (llama.cpp) -> a Hugging Face config dict, an HF-named float32 state dict and a tokenizer.

Dequantizes with the `gguf` package and undoes llama.cpp's layout changes; torch is never imported.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from valuejax.errors import ValueJaxError

# GGUF `general.architecture` -> transformers model_type (GGUF Gemma 3 files hold only the text model).
ARCH_TO_MODEL_TYPE = {
    "llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
    "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3_text",
}

_ARCHITECTURES = {
    "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
    "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM",
}

_LAYER_TENSORS = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
}
_GLOBAL_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")


def open_gguf(path: str):
  """A `gguf.GGUFReader` (memory-mapped), with a user-facing error for a file that is not GGUF."""
  import gguf
  try:
    return gguf.GGUFReader(path)
  except (ValueError, OSError) as e:
    raise ValueJaxError(f"cannot read as a GGUF file ({e})", where=path,
                        fix="pass a .gguf file written by llama.cpp or the gguf package") from None


def read_metadata(reader) -> dict[str, Any]:
  """All metadata as plain Python values (strings decoded, arrays as lists)."""
  from gguf import GGUFValueType
  out = {}
  for key, field in reader.fields.items():
    if key.startswith("GGUF."):
      continue
    value = field.contents()
    value = value.item() if isinstance(value, np.generic) else value
    if field.types == [GGUFValueType.FLOAT32]:
      # shortest decimal that round-trips in float32: 1e-06, not 9.999999974752427e-07
      value = float(str(np.float32(value)))
    out[key] = value
  return out


def hf_config(metadata: dict[str, Any], tensor_names: list[str], vocab_rows: int, where: str) -> dict:
  """A transformers-style config dict (what `config.json` would hold) from GGUF metadata."""
  arch = metadata.get("general.architecture")
  if arch not in ARCH_TO_MODEL_TYPE:
    raise ValueJaxError(
        f"GGUF architecture {arch!r} is not supported", where=where,
        fix=f"use a GGUF of one of: {', '.join(ARCH_TO_MODEL_TYPE)}, or a Hugging Face safetensors folder")
  mt = ARCH_TO_MODEL_TYPE[arch]

  def key(name: str, default: Any = ValueError) -> Any:
    full = f"{arch}.{name}"
    if full in metadata:
      return metadata[full]
    if default is ValueError:
      raise ValueJaxError(f"GGUF metadata has no {full!r}", where=where,
                          fix="re-export the GGUF with a current llama.cpp converter")
    return default

  if "rope_freqs.weight" in tensor_names:
    # llama.cpp bakes Llama-3.1 style rope scaling into this tensor; its parameters are not in the file
    raise ValueJaxError("GGUF files with a rope_freqs tensor (Llama 3.1 rope scaling) are not supported",
                        where=where, fix="load the original Hugging Face safetensors checkpoint instead")
  heads = int(key("attention.head_count"))
  hidden = int(key("embedding_length"))
  n_layer = int(key("block_count"))
  head_dim = int(key("attention.key_length", hidden // heads))
  cfg: dict[str, Any] = {
      "model_type": mt, "architectures": [_ARCHITECTURES[mt]],
      "vocab_size": int(vocab_rows), "hidden_size": hidden,
      "intermediate_size": int(key("feed_forward_length")), "num_hidden_layers": n_layer,
      "num_attention_heads": heads, "num_key_value_heads": int(key("attention.head_count_kv", heads)),
      "head_dim": head_dim, "max_position_embeddings": int(key("context_length", 2048)),
      "rms_norm_eps": float(key("attention.layer_norm_rms_epsilon", 1e-6)),
      "tie_word_embeddings": "output.weight" not in tensor_names,
      "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
      "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
      "pad_token_id": metadata.get("tokenizer.ggml.padding_token_id"),
      "attention_bias": False,
  }
  theta = float(key("rope.freq_base", 10000.0))
  scaling = key("rope.scaling.type", "none")
  if scaling in ("none", None):
    rope = {"rope_type": "default", "rope_theta": theta}
  elif scaling == "linear":
    rope = {"rope_type": "linear", "rope_theta": theta, "factor": float(key("rope.scaling.factor"))}
  else:
    raise ValueJaxError(f"GGUF rope scaling {scaling!r} is not supported", where=where,
                        fix="load the original Hugging Face checkpoint instead")

  if not mt.startswith("gemma"):
    cfg.update(hidden_act="silu", rope_parameters=rope)
    if mt == "qwen2":
      cfg["use_sliding_window"] = False
    return cfg

  cfg.update(hidden_activation="gelu_pytorch_tanh", hidden_act="gelu_pytorch_tanh")
  if mt == "gemma":
    cfg["rope_parameters"] = rope
    return cfg
  # llama.cpp scales queries by 1/sqrt(hidden / heads) for the 27B models and by 1/sqrt(head_dim) otherwise
  is_27b = n_layer == (46 if mt == "gemma2" else 62)
  cfg["query_pre_attn_scalar"] = hidden // heads if is_27b else head_dim
  cfg["sliding_window"] = int(key("attention.sliding_window"))
  # llama.cpp hard-codes the local:global pattern (2 for Gemma 2, 6 for Gemma 3) unless the file says
  # (newer files may store it as an int period or as one bool per layer, True meaning sliding)
  pattern = key("attention.sliding_window_pattern", 2 if mt == "gemma2" else 6)
  if isinstance(pattern, list):
    if len(pattern) != n_layer:
      raise ValueJaxError(f"sliding_window_pattern has {len(pattern)} entries for {n_layer} layers", where=where)
    sliding = [bool(p) for p in pattern]
  else:
    sliding = [bool((i + 1) % int(pattern)) for i in range(n_layer)]
  cfg["layer_types"] = ["sliding_attention" if s else "full_attention" for s in sliding]
  if mt == "gemma2":
    cfg.update(rope_parameters=rope,
               attn_logit_softcapping=key("attn_logit_softcapping", 50.0),
               final_logit_softcapping=key("final_logit_softcapping", 30.0))
    return cfg
  # Gemma 3: the file stores the global base only; local layers use 1e4 unless a SWA base is given
  local = {"rope_type": "default", "rope_theta": float(key("rope.freq_base_swa", 10000.0))}
  cfg.update(rope_parameters={"full_attention": rope, "sliding_attention": local},
             final_logit_softcapping=None, attn_logit_softcapping=None)
  return cfg


def hf_name(gguf_name: str, model_type: str, where: str) -> str:
  """HF tensor name of one GGUF tensor name."""
  sandwich = model_type in ("gemma2", "gemma3_text")
  base, _, suffix = gguf_name.rpartition(".")
  if base in _GLOBAL_TENSORS and suffix in ("weight", "bias"):
    return f"{_GLOBAL_TENSORS[base]}.{suffix}"
  m = _BLOCK.match(gguf_name)
  if m:
    layer, part, suffix = m.groups()
    if part == "ffn_norm":  # the pre-MLP norm: a sandwich model also has a post-attention norm
      hf = "pre_feedforward_layernorm" if sandwich else "post_attention_layernorm"
    else:
      hf = _LAYER_TENSORS.get(part)
    if hf is not None:
      return f"model.layers.{layer}.{hf}.{suffix}"
  raise ValueJaxError(f"GGUF tensor {gguf_name!r} has no Hugging Face counterpart for {model_type}",
                      where=where, fix="this GGUF layout is not supported; load a safetensors checkpoint")


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
  """Undoes llama.cpp's rotary re-ordering of q/k rows: reverse of
  `w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)`."""
  half = w.shape[0] // n_head // 2
  return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def dequantize(tensor) -> np.ndarray:
  """float32 numpy array in numpy order (GGUF lists dimensions fastest-first, so (out, in) for a matrix)."""
  from gguf import quants
  x = np.asarray(quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
  shape = tuple(int(d) for d in reversed(tensor.shape))
  return x.reshape(shape)


_DEQUANTIZABLE: dict[Any, bool] = {}


def can_dequantize(qtype) -> bool:
  """Whether the installed `gguf` package can dequantize `qtype`.

  Asked by dequantizing one all-zero block rather than read from a list: the set grows with each `gguf`
  release (and its registry is private), and gguf signals a missing type only with NotImplementedError.
  """
  if qtype not in _DEQUANTIZABLE:
    from gguf import GGML_QUANT_SIZES, quants
    ok = qtype in GGML_QUANT_SIZES
    if ok:
      try:
        quants.dequantize(np.zeros(GGML_QUANT_SIZES[qtype][1], np.uint8), qtype)
      except NotImplementedError:
        ok = False
    _DEQUANTIZABLE[qtype] = ok
  return _DEQUANTIZABLE[qtype]


def check_tensor_types(reader, where: str) -> None:
  """Refuses a file holding any tensor type that cannot be dequantized, before any work is done, so a
  conversion never spends minutes on a large file only to fail at its last tensor."""
  bad: dict[str, list[str]] = {}
  for t in reader.tensors:
    if not can_dequantize(t.tensor_type):
      bad.setdefault(getattr(t.tensor_type, "name", str(t.tensor_type)), []).append(t.name)
  if bad:
    what = "; ".join(f"{len(names)} tensor(s) of type {qtype} ({', '.join(repr(n) for n in names[:3])}"
                     + (", ..." if len(names) > 3 else "") + ")" for qtype, names in bad.items())
    from importlib.metadata import version
    raise ValueJaxError(
        f"GGUF file has tensors in a quantization type that cannot be dequantized: {what}", where=where,
        fix=f"re-quantize the model to a supported type (e.g. Q8_0, Q4_K_M or F16) with llama.cpp's llama-quantize "
            f"or convert_hf_to_gguf.py, or load the original Hugging Face safetensors checkpoint instead "
            f"(the installed gguf {version('gguf')} has no dequantizer for {', '.join(bad)})")


def hf_state_dict(reader, cfg: dict, where: str) -> dict[str, np.ndarray]:
  """Every tensor of the file, dequantized to float32 and renamed / re-laid-out as in HF checkpoints."""
  mt = cfg["model_type"]
  gemma = mt.startswith("gemma")
  check_tensor_types(reader, where)
  state = {}
  for tensor in reader.tensors:
    name = hf_name(tensor.name, mt, where)
    w = dequantize(tensor)
    if mt == "llama" and (".attn_q." in tensor.name or ".attn_k." in tensor.name):
      n_head = cfg["num_attention_heads"] if ".attn_q." in tensor.name else cfg["num_key_value_heads"]
      w = unpermute_rows(w, n_head)
    if gemma and tensor.name.endswith("norm.weight"):
      w = w - 1.0  # llama.cpp stores Gemma's offset norms as 1 + w
    state[name] = np.ascontiguousarray(w)
  return state


def tokenizer(metadata: dict[str, Any], where: str):
  """A transformers fast tokenizer built from the vocabulary in the metadata (chat template kept).

  Follows what `AutoTokenizer.from_pretrained(dir, gguf_file=...)` does, minus its torch-based file reader.
  """
  from transformers.integrations.gguf.gguf_tokenizer_mapping import (
      _SPECIAL_TOKENS, GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer)
  from transformers.tokenization_utils_tokenizers import TokenizersBackend
  if "tokenizer.ggml.tokens" not in metadata:
    raise ValueJaxError("GGUF file has no tokenizer vocabulary (tokenizer.ggml.tokens)", where=where,
                        fix="use a GGUF exported with its tokenizer")
  grouped = {
      group: {name: metadata[f"tokenizer.{k}"] for k, name in renames.items() if f"tokenizer.{k}" in metadata}
      for group, renames in GGUF_TOKENIZER_MAPPING.items()}
  tok_dict, tok_config = grouped["tokenizer"], grouped["tokenizer_config"]
  if tok_dict.get("tokenizer_type") == "llama":
    # llama.cpp adds BOS to a sentencepiece vocabulary that does not say otherwise
    tok_config.setdefault("add_bos_token", True)
  for name, k in _SPECIAL_TOKENS.items():
    token_id = metadata.get(f"tokenizer.ggml.{k}")
    tok_config[name] = tok_dict["tokens"][token_id] if token_id is not None else None
  arch = metadata["general.architecture"]
  try:
    backend, extra = convert_gguf_tokenizer(arch, tok_dict)
  except ValueError as e:
    raise ValueJaxError(f"cannot build the tokenizer: {e}", where=where) from None
  cls = TokenizersBackend
  if arch.startswith("gemma"):
    # the class AutoTokenizer picks for Gemma; it carries Gemma's defaults (left padding, <mask>)
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer
    cls = GemmaTokenizer
  return cls(tokenizer_object=backend, **tok_config, **extra)


def read_gguf(path: str) -> tuple[dict, dict[str, np.ndarray], Any]:
  """(HF config dict, HF-named float32 state dict, tokenizer) of a GGUF file."""
  where = os.fspath(path)
  reader = open_gguf(where)
  metadata = read_metadata(reader)
  names = [t.name for t in reader.tensors]
  embed = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
  if embed is None:
    raise ValueJaxError("GGUF file has no token_embd.weight tensor", where=where)
  cfg = hf_config(metadata, names, int(embed.shape[-1]), where)
  state = hf_state_dict(reader, cfg, where)
  return cfg, state, tokenizer(metadata, where)
