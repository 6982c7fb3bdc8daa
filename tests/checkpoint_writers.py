"""Checkpoint writers for the loading tests: tiny random torch models (llama, GPT-2, Gemma 3) and the files
each format stores them in (safetensors folders, HF Flax trees, llama.cpp GGUF files with quantized tensors),
with what each tensor must load back as. torch is the reference here only; the loader never uses it.
"""

from __future__ import annotations

import gguf
import numpy as np
import torch

KERNELS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
            "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
  """Random values everywhere (HF inits norms to constants, which would hide a mix-up of norms)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def numpy_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}


def tiny_llama(tie: bool = False):
  from transformers import LlamaConfig, LlamaForCausalLM
  cfg = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=128, max_position_embeddings=256, rope_theta=1e5,
                    tie_word_embeddings=tie, rms_norm_eps=1e-5)
  model = LlamaForCausalLM(cfg)
  randomize(model)
  return model


def tiny_tokenizer():
  from tokenizers import Tokenizer, models, pre_tokenizers
  from transformers.tokenization_utils_tokenizers import TokenizersBackend
  vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "hello", "world", "values", "!"])}
  backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  backend.pre_tokenizer = pre_tokenizers.Whitespace()
  return TokenizersBackend(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def save(model, folder) -> str:
  model.save_pretrained(folder)
  return str(folder)


def put_leaf(tree: dict, path, leaf: str, w) -> None:
  """Stores `w` at tree[path...][leaf], creating the nested dicts of an HF Flax checkpoint on the way."""
  node = tree
  for key in path:
    node = node.setdefault(key, {})
  node[leaf] = np.ascontiguousarray(w)


def flax_tree(sd: dict[str, np.ndarray]) -> dict:
  """The HF Flax layout: Dense `kernel` [in, out], Embed `embedding`, layers keyed by index strings."""
  tree: dict = {}
  for name, w in sd.items():
    *path, module, leaf = name.split(".")
    if module == "embed_tokens":
      leaf, w = "embedding", w
    elif w.ndim == 2:
      leaf, w = "kernel", w.T
    put_leaf(tree, (*path, module), leaf, w)
  return tree


def tiny_gpt2():
  from transformers import GPT2Config, GPT2LMHeadModel
  model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64))
  randomize(model, seed=2)
  return model


def gpt2_flax_tree(model) -> dict:
  """What transformers' torch -> Flax conversion (modeling_flax_pytorch_utils.rename_key_and_reshape_tensor)
  writes for GPT-2: `embedding` for wte/wpe, `scale` for LayerNorm weights, and `kernel` = weight.T for every
  other 2-D weight, Conv1D included. FlaxConv1D declares its kernel (features, in) and transposes it when
  applied, so the stored kernel is [out, in] (torch Conv1D keeps [in, out]): the same one transpose as a Dense
  kernel. The tied lm_head has no parameter of its own in FlaxGPT2LMHeadModel."""
  tree: dict = {}
  for name, p in model.named_parameters():  # a tied lm_head is listed once, as wte
    w = p.detach().numpy()
    *path, module, leaf = name.split(".")
    if module in ("wte", "wpe"):
      leaf = "embedding"
    elif module.startswith("ln_") and leaf == "weight":
      leaf = "scale"
    elif leaf == "weight":
      leaf, w = "kernel", w.T
    put_leaf(tree, (*path, module), leaf, w)
  return tree


def llamacpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
  """What llama.cpp's convert_hf_to_gguf.py does to Llama q/k rows."""
  return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def q8(w: np.ndarray) -> np.ndarray:
  return gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)


def byte_level_vocab() -> tuple[list[str], list[str], list[int]]:
  from transformers.convert_slow_tokenizer import bytes_to_unicode
  spell = bytes_to_unicode()
  specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
  chars = [spell[b] for b in range(33, 127)] + [spell[ord(" ")]]
  merges = ["h e", "l l", "he ll", "hell o"]
  tokens = specials + chars + ["he", "ll", "hell", "hello"]
  tokens += [f"<extra_{i}>" for i in range(128 - len(tokens))]
  types = [3] * 3 + [1] * (len(tokens) - 3)
  return tokens, merges, types


CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def gguf_writer(path, arch: str, c) -> "gguf.GGUFWriter":
  """A writer with the size fields every architecture shares, taken from the HF config `c`."""
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(c.num_hidden_layers)
  w.add_context_length(c.max_position_embeddings)
  w.add_embedding_length(c.hidden_size)
  w.add_feed_forward_length(c.intermediate_size)
  w.add_head_count(c.num_attention_heads)
  w.add_head_count_kv(c.num_key_value_heads)
  return w


def write_llama_gguf(path, model) -> dict[str, np.ndarray]:
  """A llama.cpp-style GGUF of `model`; returns what each HF tensor should load back as."""
  c = model.config
  sd = numpy_state(model)
  w = gguf_writer(path, "llama", c)
  w.add_rope_freq_base(1e5)
  w.add_layer_norm_rms_eps(1e-5)
  w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
  tokens, merges, types = byte_level_vocab()
  w.add_tokenizer_model("gpt2")
  w.add_token_list(tokens)
  w.add_token_types(types)
  w.add_token_merges(merges)
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  w.add_pad_token_id(2)
  w.add_chat_template(CHAT_TEMPLATE)
  expected = {}

  def put(gguf_name, hf_name, arr, quantize=False):
    if quantize:
      q = q8(arr)
      w.add_tensor(gguf_name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
      # row-wise quantization commutes with the q/k row permutation, so the loader must give back exactly this
      expected[hf_name] = gguf.quants.dequantize(q8(sd[hf_name]), gguf.GGMLQuantizationType.Q8_0)
    else:
      w.add_tensor(gguf_name, np.ascontiguousarray(arr))
      expected[hf_name] = sd[hf_name]

  put("token_embd.weight", "model.embed_tokens.weight", sd["model.embed_tokens.weight"])
  put("output_norm.weight", "model.norm.weight", sd["model.norm.weight"])
  put("output.weight", "lm_head.weight", sd["lm_head.weight"])
  for i in range(c.num_hidden_layers):
    p = f"model.layers.{i}."
    put(f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight",
        llamacpp_permute(sd[p + "self_attn.q_proj.weight"], c.num_attention_heads), quantize=(i == 1))
    put(f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight",
        llamacpp_permute(sd[p + "self_attn.k_proj.weight"], c.num_key_value_heads), quantize=(i == 1))
    put(f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight", sd[p + "self_attn.v_proj.weight"], quantize=True)
    put(f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight", sd[p + "self_attn.o_proj.weight"])
    put(f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", sd[p + "mlp.gate_proj.weight"])
    put(f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", sd[p + "mlp.up_proj.weight"], quantize=True)
    put(f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight", sd[p + "mlp.down_proj.weight"])
    put(f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", sd[p + "input_layernorm.weight"])
    put(f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", sd[p + "post_attention_layernorm.weight"])
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return expected


def tiny_gemma3():
  from transformers import Gemma3ForCausalLM, Gemma3TextConfig
  cfg = Gemma3TextConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                         sliding_window=16, max_position_embeddings=256)
  model = Gemma3ForCausalLM(cfg)
  randomize(model, seed=1)
  return model


GEMMA_TENSORS = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
}


def write_gemma3_gguf(path, model) -> dict[str, np.ndarray]:
  c = model.config
  sd = numpy_state(model)
  w = gguf_writer(path, "gemma3", c)
  w.add_key_length(c.head_dim)
  w.add_value_length(c.head_dim)
  w.add_rope_freq_base(1e6)
  w.add_layer_norm_rms_eps(1e-6)
  w.add_sliding_window(c.sliding_window)
  pieces = ["\u2581", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello", "\u2581hello", "wo", "wor",
            "worl", "world", "\u2581world"]
  tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + pieces
  w.add_tokenizer_model("llama")
  w.add_token_list(tokens)
  w.add_token_scores([0.0] * len(tokens))
  w.add_token_types([3, 3, 3, 2, 3] + [1] * len(pieces))
  w.add_bos_token_id(2)
  w.add_eos_token_id(1)
  w.add_pad_token_id(0)
  w.add_unk_token_id(3)
  w.add_add_bos_token(True)
  expected = {}

  def put(gguf_name, hf_name):
    arr = sd[hf_name]
    if hf_name.endswith("norm.weight"):  # llama.cpp stores Gemma's 1 + w
      arr = arr + np.float32(1.0)
      expected[hf_name] = arr - np.float32(1.0)
    else:
      expected[hf_name] = arr
    w.add_tensor(gguf_name, np.ascontiguousarray(arr))

  put("token_embd.weight", "model.embed_tokens.weight")
  put("output_norm.weight", "model.norm.weight")
  for i in range(c.num_hidden_layers):
    for g, hf in GEMMA_TENSORS.items():
      put(f"blk.{i}.{g}.weight", f"model.layers.{i}.{hf}.weight")
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return expected
