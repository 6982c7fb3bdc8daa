"""Hugging Face state dicts (torch names, numpy arrays) -> valuejax params with layers stacked on axis 0.

The tree built is the stacked layout of `valuejax.models.layout.param_shapes` (which lists every weight
and its shape); kernels are [in, out]. Norm scales keep Hugging Face's meaning (Gemma's are offsets: the
forward multiplies by 1 + w).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.models.config import ModelConfig

_LLAMA_LIKE_LAYER = {
    "attn_norm": "input_layernorm",
    "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
    "q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm",
    "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
}


def _layer_names(cfg: ModelConfig) -> dict[str, str]:
  names = dict(_LLAMA_LIKE_LAYER)
  if cfg.sandwich_norm:
    names.update(post_attn_norm="post_attention_layernorm", mlp_norm="pre_feedforward_layernorm",
                 post_mlp_norm="post_feedforward_layernorm")
  else:
    names.update(mlp_norm="post_attention_layernorm")
  if not cfg.qk_norm:
    del names["q_norm"], names["k_norm"]
  return names


def _strip_prefix(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Accepts `model.`-, `transformer.`- and `model.language_model.`-prefixed names alike."""
  out = {}
  for name, value in state.items():
    for prefix in ("model.language_model.", "language_model.model.", "model.", "transformer."):
      if name.startswith(prefix):
        name = name[len(prefix):]
        break
    out[name] = value
  return out


class _Reader:
  def __init__(self, state: Mapping[str, np.ndarray], dtype):
    self.state, self.dtype, self.used = state, dtype, set()

  def get(self, name: str, transpose: bool = False) -> np.ndarray:
    if name not in self.state:
      raise ValueJaxError(f"checkpoint has no tensor {name!r}",
                          fix="check that the checkpoint matches its config.json (model_type, sizes)")
    self.used.add(name)
    x = np.asarray(self.state[name])
    return (x.T if transpose else x).astype(self.dtype, copy=False)

  def has(self, name: str) -> bool:
    return name in self.state

  def stack(self, cfg: ModelConfig, fmt: str, transpose: bool = False) -> np.ndarray:
    # stack as stored, then transpose as a view: a strided copy of every layer is 3-5x slower, and
    # device_put lays the result out anyway
    x = np.stack([self.get(fmt.format(i)) for i in range(cfg.num_layers)])
    return x.swapaxes(1, 2) if transpose else x


def params_from_hf(state: Mapping[str, np.ndarray], cfg: ModelConfig, dtype=np.float32) -> dict:
  """Converts a Hugging Face state dict to the stacked valuejax layout (numpy arrays); every weight's
  shape is checked against the config, so a config.json of another model fails here, by name."""
  params = _params_from_hf(state, cfg, dtype)
  check_shapes(params, cfg)
  return params


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """The leaves of a nested dict by "/"-joined path, in the dict's own order."""
  out = {}
  for key, value in tree.items():
    out.update(_leaves(value, prefix + key + "/") if isinstance(value, Mapping) else {prefix + key: value})
  return out


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """The shape the config implies for each weight of the stacked layout ("layers/gate/kernel": [L, H, F]),
  from `param_shapes`, in its order (embedding, final norm, then each layer's weights from input to output)."""
  from valuejax.models.layout import param_shapes
  return {path: tuple(leaf.shape) for path, leaf in _leaves(param_shapes(cfg, "stacked")).items()}


def check_shapes(params: Mapping[str, Any], cfg: ModelConfig) -> None:
  """Every weight the config implies is present with its shape, and there is no other; the first weight
  that differs is named."""
  want, got = expected_shapes(cfg), _leaves(params)
  sizes = (f"(num_layers {cfg.num_layers}, hidden {cfg.hidden_size}, intermediate {cfg.intermediate_size}, "
           f"vocab {cfg.vocab_size})")
  for path, shape in want.items():
    if path not in got:
      raise ValueJaxError(f"weight {path} is missing, but config.json implies it {sizes}",
                          fix="use the config.json that belongs to these weights")
    if tuple(got[path].shape) != shape:
      raise ValueJaxError(f"weight {path} has shape {tuple(got[path].shape)}, but config.json implies {shape} "
                          + sizes, fix="use the config.json that belongs to these weights")
  extra = sorted(set(got) - set(want))
  if extra:
    raise ValueJaxError(f"weights {', '.join(extra)} are not part of the {cfg.model_type} layout config.json "
                        f"implies {sizes}", fix="use the config.json that belongs to these weights")


def _params_from_hf(state: Mapping[str, np.ndarray], cfg: ModelConfig, dtype=np.float32) -> dict:
  state = _strip_prefix(state)
  r = _Reader(state, dtype)
  if cfg.model_type == "gpt2":
    return _gpt2(r, cfg)
  layers: dict = {}
  for ours, hf in _layer_names(cfg).items():
    if ours in ("q", "k", "v", "o", "gate", "up", "down"):
      leaf = {"kernel": r.stack(cfg, f"layers.{{}}.{hf}.weight", transpose=True)}
      bias = (cfg.qkv_bias if ours in "qkv" else cfg.o_bias if ours == "o" else cfg.mlp_bias)
      if bias:
        leaf["bias"] = r.stack(cfg, f"layers.{{}}.{hf}.bias")
      layers[ours] = leaf
    else:
      layers[ours] = {"scale": r.stack(cfg, f"layers.{{}}.{hf}.weight")}
  params = {"embed": r.get("embed_tokens.weight"), "final_norm": {"scale": r.get("norm.weight")},
            "layers": layers}
  if not cfg.tie_embeddings:
    head = "lm_head.weight"
    if not r.has(head):
      raise ValueJaxError("checkpoint has no lm_head.weight but tie_word_embeddings is false",
                          fix="set tie_word_embeddings true in config.json if the head is tied")
    params["lm_head"] = r.get(head, transpose=True)
  return params


def _gpt2(r: _Reader, cfg: ModelConfig) -> dict:
  d = cfg.hidden_size
  qkv_w = r.stack(cfg, "h.{}.attn.c_attn.weight")  # Conv1D: already [in, out]
  qkv_b = r.stack(cfg, "h.{}.attn.c_attn.bias")
  layers = {
      "attn_norm": {"scale": r.stack(cfg, "h.{}.ln_1.weight"), "bias": r.stack(cfg, "h.{}.ln_1.bias")},
      "mlp_norm": {"scale": r.stack(cfg, "h.{}.ln_2.weight"), "bias": r.stack(cfg, "h.{}.ln_2.bias")},
      "q": {"kernel": qkv_w[:, :, :d], "bias": qkv_b[:, :d]},
      "k": {"kernel": qkv_w[:, :, d:2 * d], "bias": qkv_b[:, d:2 * d]},
      "v": {"kernel": qkv_w[:, :, 2 * d:], "bias": qkv_b[:, 2 * d:]},
      "o": {"kernel": r.stack(cfg, "h.{}.attn.c_proj.weight"), "bias": r.stack(cfg, "h.{}.attn.c_proj.bias")},
      "gate": {"kernel": r.stack(cfg, "h.{}.mlp.c_fc.weight"), "bias": r.stack(cfg, "h.{}.mlp.c_fc.bias")},
      "down": {"kernel": r.stack(cfg, "h.{}.mlp.c_proj.weight"), "bias": r.stack(cfg, "h.{}.mlp.c_proj.bias")},
  }
  params = {"embed": r.get("wte.weight"), "pos_embed": r.get("wpe.weight"),
            "final_norm": {"scale": r.get("ln_f.weight"), "bias": r.get("ln_f.bias")}, "layers": layers}
  if not cfg.tie_embeddings:
    params["lm_head"] = r.get("lm_head.weight", transpose=True)
  return params
