"""One decoder family, many architectures: `ModelConfig` holds the switches that tell them apart.

A new architecture is a mapping in `ModelConfig.from_hf` plus a parity test, not a new forward pass.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from valuejax.errors import ValueJaxError

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2")

_ACTIVATIONS = {
    "silu": "silu", "swish": "silu",
    "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
    "gelu": "gelu", "relu": "relu",
}


@dataclasses.dataclass(frozen=True)
class RoPE:
  """Rotary embedding of one attention kind; hashable so it can live in a static config."""
  theta: float
  kind: str = "default"  # default | linear | llama3
  factor: float = 1.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Static description of a decoder. Hashable: pass it as a static argument to jit."""
  model_type: str
  vocab_size: int
  hidden_size: int
  intermediate_size: int  # F, the size of the "neurons" axis
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  norm_eps: float = 1e-6
  norm_kind: str = "rms"  # rms | layer (LayerNorm with bias, GPT-2)
  norm_offset: bool = False  # Gemma: y = norm(x) * (1 + w)
  act: str = "silu"  # silu | gelu_tanh | gelu | relu
  gated_mlp: bool = True  # False: down(act(gate(x))) with `gate` the input projection (GPT-2 c_fc)
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False  # RMSNorm over head_dim on q and k before RoPE (Qwen3, Gemma3)
  sandwich_norm: bool = False  # extra norms after attention and after the MLP (Gemma2/3)
  embed_scale: bool = False  # multiply embeddings by sqrt(hidden_size) (Gemma)
  learned_positions: bool = False  # GPT-2 absolute position embeddings instead of RoPE
  max_position_embeddings: int = 2048
  rope_global: RoPE | None = RoPE(10000.0)
  rope_local: RoPE | None = None  # for sliding layers when it differs (Gemma3)
  sliding_window: int | None = None
  layer_types: tuple[str, ...] = ()  # per layer: "full" | "sliding"
  attn_softcap: float | None = None
  final_softcap: float | None = None
  attn_scale: float | None = None  # None: head_dim ** -0.5
  tie_embeddings: bool = False
  bos_token_id: int | None = None
  eos_token_ids: tuple[int, ...] = ()
  pad_token_id: int | None = None
  bos_first: bool = False  # put <bos> first on a prompt without a chat template (Gemma: garbage without it)

  @property
  def prompt_bos_id(self) -> int | None:
    """The token put first on a prompt that has no chat template (see `bos_first`), or None."""
    return self.bos_token_id if self.bos_first else None

  @property
  def scale(self) -> float:
    return self.attn_scale if self.attn_scale is not None else self.head_dim ** -0.5

  @property
  def sliding_layers(self) -> tuple[bool, ...]:
    return tuple(t == "sliding" for t in self.layer_types)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
    d = dict(d)
    for key in ("rope_global", "rope_local"):
      if d.get(key) is not None:
        d[key] = RoPE(**d[key])
    d["layer_types"] = tuple(d.get("layer_types", ()))
    d["eos_token_ids"] = tuple(d.get("eos_token_ids", ()))
    return cls(**d)

  @classmethod
  def from_hf(cls, hf: Any) -> "ModelConfig":
    """From a transformers `PretrainedConfig` or its `to_dict()`."""
    d = hf if isinstance(hf, Mapping) else hf.to_dict()
    mt = d.get("model_type")
    if mt == "gemma3":  # multimodal wrapper: the text part is what we run
      d, mt = {**d["text_config"], "model_type": "gemma3_text"}, "gemma3_text"
    if mt not in SUPPORTED_MODEL_TYPES:
      raise ValueJaxError(
          f"model_type {mt!r} is not supported",
          fix=f"use a checkpoint of one of: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return _from_hf_dict(mt, d)


def _eos(d) -> tuple[int, ...]:
  eos = d.get("eos_token_id")
  if eos is None:
    return ()
  return tuple(int(e) for e in eos) if isinstance(eos, (list, tuple)) else (int(eos),)


def _rope(params: Mapping[str, Any] | None, where: str) -> RoPE:
  params = dict(params or {})
  kind = params.get("rope_type", params.get("type", "default"))
  theta = float(params.get("rope_theta", 10000.0))
  if kind == "default":
    return RoPE(theta)
  if kind == "linear":
    return RoPE(theta, "linear", float(params["factor"]))
  if kind == "llama3":
    return RoPE(theta, "llama3", float(params["factor"]), float(params["low_freq_factor"]),
                float(params["high_freq_factor"]), int(params["original_max_position_embeddings"]))
  raise ValueJaxError(f"rope type {kind!r} is not supported", where=where,
                      fix="use a checkpoint with rope_type default, linear or llama3")


def _rope_params(d: Mapping[str, Any]) -> Mapping[str, Any]:
  """transformers 5 writes `rope_parameters`; older configs `rope_theta` + `rope_scaling`."""
  if d.get("rope_parameters"):
    return d["rope_parameters"]
  p = dict(d.get("rope_scaling") or {})
  p["rope_theta"] = d.get("rope_theta", 10000.0)
  return p


def _from_hf_dict(mt: str, d: Mapping[str, Any]) -> ModelConfig:
  where = f"config.json (model_type {mt})"
  if mt == "gpt2":
    n_embd, n_layer = d["n_embd"], d["n_layer"]
    if d.get("scale_attn_by_inverse_layer_idx") or d.get("reorder_and_upcast_attn"):
      raise ValueJaxError("GPT-2 variants with scale_attn_by_inverse_layer_idx or reorder_and_upcast_attn "
                          "are not supported", where=where)
    act = d.get("activation_function", "gelu_new")
    return ModelConfig(
        model_type=mt, vocab_size=d["vocab_size"], hidden_size=n_embd,
        intermediate_size=d.get("n_inner") or 4 * n_embd, num_layers=n_layer,
        num_heads=d["n_head"], num_kv_heads=d["n_head"], head_dim=n_embd // d["n_head"],
        norm_eps=d.get("layer_norm_epsilon", 1e-5), norm_kind="layer", act=_act(act, where),
        gated_mlp=False, qkv_bias=True, o_bias=True, mlp_bias=True, learned_positions=True,
        max_position_embeddings=d.get("n_positions", 1024), rope_global=None,
        layer_types=("full",) * n_layer, tie_embeddings=d.get("tie_word_embeddings", True),
        attn_scale=None if d.get("scale_attn_weights", True) else 1.0,
        bos_token_id=d.get("bos_token_id"), eos_token_ids=_eos(d), pad_token_id=d.get("pad_token_id"))

  n_layer = d["num_hidden_layers"]
  heads = d["num_attention_heads"]
  head_dim = d.get("head_dim") or d["hidden_size"] // heads
  rp = _rope_params(d)
  gemma = mt.startswith("gemma")
  common = dict(
      model_type=mt, vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
      intermediate_size=d["intermediate_size"], num_layers=n_layer, num_heads=heads,
      num_kv_heads=d.get("num_key_value_heads") or heads, head_dim=head_dim,
      norm_eps=d.get("rms_norm_eps", 1e-6),
      act=_act(d.get("hidden_activation") or d.get("hidden_act") or "silu", where),
      max_position_embeddings=d.get("max_position_embeddings", 2048),
      tie_embeddings=d.get("tie_word_embeddings", gemma),
      bos_token_id=d.get("bos_token_id"), eos_token_ids=_eos(d), pad_token_id=d.get("pad_token_id"),
      norm_offset=gemma, embed_scale=gemma, bos_first=gemma)
  types = d.get("layer_types")
  window = d.get("sliding_window")

  if mt in ("llama", "qwen2", "qwen3"):
    if mt in ("qwen2", "qwen3") and not d.get("use_sliding_window", False):
      window = None
    elif mt == "llama":
      window = None
    layer_types = _layer_types(types, n_layer, window)
    return ModelConfig(
        **common, rope_global=_rope(rp, where),
        qkv_bias=(mt == "qwen2") or bool(d.get("attention_bias", False)),
        o_bias=bool(d.get("attention_bias", False)) and mt != "qwen2",
        mlp_bias=bool(d.get("mlp_bias", False)), qk_norm=(mt == "qwen3"),
        sliding_window=window if "sliding" in layer_types else None, layer_types=layer_types)
  if mt == "mistral":
    layer_types = ("sliding",) * n_layer if window else ("full",) * n_layer
    return ModelConfig(**common, rope_global=_rope(rp, where), sliding_window=window,
                       layer_types=layer_types)
  if mt == "gemma":
    return ModelConfig(**common, rope_global=_rope(rp, where), layer_types=("full",) * n_layer,
                       qkv_bias=bool(d.get("attention_bias", False)),
                       o_bias=bool(d.get("attention_bias", False)))
  # gemma2, gemma3_text
  if types is None:
    if mt == "gemma2":
      types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n_layer)]
    else:
      pattern = d.get("sliding_window_pattern") or d.get("_sliding_window_pattern") or 6
      types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layer)]
  layer_types = _layer_types(types, n_layer, window)
  scalar = d.get("query_pre_attn_scalar") or head_dim
  if mt == "gemma3_text":
    if "full_attention" in rp or "sliding_attention" in rp:
      rope_global = _rope(rp.get("full_attention"), where)
      rope_local = _rope(rp.get("sliding_attention"), where)
    else:  # older layout: rope_theta + rope_local_base_freq + rope_scaling
      rope_global = _rope(rp, where)
      rope_local = RoPE(float(d.get("rope_local_base_freq", 10000.0)))
  else:
    rope_global, rope_local = _rope(rp, where), None
  return ModelConfig(
      **common, rope_global=rope_global, rope_local=rope_local, qk_norm=(mt == "gemma3_text"),
      sandwich_norm=True, sliding_window=window, layer_types=layer_types,
      attn_softcap=d.get("attn_logit_softcapping"), final_softcap=d.get("final_logit_softcapping"),
      attn_scale=float(scalar) ** -0.5,
      qkv_bias=bool(d.get("attention_bias", False)), o_bias=bool(d.get("attention_bias", False)))


def _layer_types(types, n_layer: int, window) -> tuple[str, ...]:
  if not types:
    return ("sliding" if window else "full",) * n_layer
  out = tuple("sliding" if t == "sliding_attention" else "full" for t in types)
  if len(out) != n_layer:
    raise ValueJaxError(f"layer_types has {len(out)} entries for {n_layer} layers", where="config.json")
  if not window:
    out = ("full",) * n_layer
  return out


def _act(name: str, where: str) -> str:
  if name not in _ACTIVATIONS:
    raise ValueJaxError(f"activation {name!r} is not supported", where=where,
                        fix=f"supported: {', '.join(sorted(_ACTIVATIONS))}")
  return _ACTIVATIONS[name]


def rope_inv_freq(rope: RoPE, head_dim: int):
  """Inverse frequencies [head_dim // 2] as numpy float64, following transformers' rope init."""
  import numpy as np
  inv = 1.0 / (rope.theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float64) / head_dim))
  if rope.kind == "linear":
    inv = inv / rope.factor
  elif rope.kind == "llama3":
    low_wavelen = rope.original_max_position_embeddings / rope.low_freq_factor
    high_wavelen = rope.original_max_position_embeddings / rope.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / rope.factor, inv)
    smooth = (rope.original_max_position_embeddings / wavelen - rope.low_freq_factor) / (
        rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) / rope.factor * scaled + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    inv = np.where(medium, smoothed, scaled)
  return inv
