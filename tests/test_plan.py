"""The memory plan: public model configs parse and give their known parameter counts; on the 4x2 CPU mesh the
plan's weights and statistics per device are the bytes a device really holds; its activation estimate is of
the order of XLA's own count; the launcher prints a table and a verdict, and refuses bad input in one
paragraph."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import tiny_models
from valuejax import plan as vp
from valuejax.engine import sharding as shd
from valuejax.engine.generate import Generator, StatsSpec
from valuejax.errors import ValueJaxError
from valuejax.models.config import ModelConfig
from valuejax.models.forward import unstack_layers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "model_configs")
# Published parameter counts (the model cards' and the checkpoints' totals).
KNOWN_PARAMS = {"Llama-3.1-8B": 8.03e9, "Llama-3.1-70B": 70.6e9, "Qwen2-7B": 7.6e9, "gemma-2-9b": 9.24e9}


def _device0_bytes(arrays) -> int:
  d0 = jax.devices()[0]
  return sum(s.data.nbytes for a in jax.tree.leaves(arrays) for s in a.addressable_shards if s.device == d0)


# -- public configs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(KNOWN_PARAMS))
def test_public_configs_parse_and_count_their_parameters(name):
  cfg = vp.read_model_config(os.path.join(FIXTURES, name))
  with open(os.path.join(FIXTURES, name, "config.json"), encoding="utf-8") as f:
    assert cfg == ModelConfig.from_hf(json.load(f))
  n = vp.param_count(cfg)
  assert abs(n / KNOWN_PARAMS[name] - 1) < 0.01, (name, n)
  plan = vp.memory_plan(cfg, dtype="bfloat16")
  assert plan.weights_total == 2 * n == plan.get("weights")  # one device, replicated: every weight


def test_public_configs_keep_their_architecture():
  llama = vp.read_model_config(os.path.join(FIXTURES, "Llama-3.1-70B"))
  assert (llama.num_layers, llama.intermediate_size, llama.num_kv_heads, llama.head_dim) == (80, 28672, 8, 128)
  assert llama.rope_global.kind == "llama3" and llama.rope_global.factor == 8.0 and not llama.tie_embeddings
  gemma = vp.read_model_config(os.path.join(FIXTURES, "gemma-2-9b"))
  assert gemma.attn_softcap == 50.0 and gemma.final_softcap == 30.0 and gemma.sliding_window == 4096
  assert gemma.act == "gelu_tanh" and gemma.tie_embeddings and gemma.head_dim == 256
  assert gemma.layer_types[:2] == ("sliding", "full") and gemma.scale == 256 ** -0.5
  qwen = vp.read_model_config(os.path.join(FIXTURES, "Qwen2-7B"))
  assert qwen.qkv_bias and qwen.sliding_window is None and qwen.rope_global.theta == 1e6


@pytest.mark.parametrize("arch", tiny_models.ARCHS)
def test_abstract_params_are_the_loaded_tree(arch):
  """Every leaf the converter makes, with its shape and dtype, for every architecture."""
  _, cfg, params = tiny_models.valuejax_model(arch)
  want = jax.tree.map(lambda a: (a.shape, a.dtype), params)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), vp.abstract_params(cfg)) == want


# -- against the bytes devices hold ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
  _, cfg, params = tiny_models.valuejax_model("llama")
  return cfg, params


@pytest.mark.parametrize("layout", ["stacked", "decode"])
@pytest.mark.parametrize("mode", ["fsdp", "replicated"])
def test_weights_per_device_are_the_live_bytes(tiny, layout, mode):
  cfg, params = tiny
  mesh = shd.make_mesh(4, 2)
  placed = shd.shard_params(params if layout == "stacked" else unstack_layers(params, 1), mesh, mode)
  plan = vp.memory_plan(cfg, data=4, model=2, params=mode, layout=layout)
  live = _device0_bytes(placed)
  assert plan.get("weights") == live, (plan.get("weights"), live)
  total = sum(a.nbytes for a in jax.tree.leaves(params))
  assert plan.weights_total == total
  if mode == "fsdp":
    assert live < 0.6 * total  # split, not replicated


def test_statistics_per_device_are_the_live_bytes(tiny):
  cfg, params = tiny
  mesh = shd.make_mesh(4, 2)
  gen = Generator(shd.shard_params(params, mesh, "fsdp"), cfg, mesh=mesh, pad_id=0, eos_ids=(2,))
  ids = np.random.default_rng(0).integers(3, cfg.vocab_size, size=(8, 13)).astype(np.int32)
  spec = StatsSpec(3, hist=True, hist_bins="compact")
  out = gen(ids, None, 5, group_ids=np.arange(8) % 3, stats=spec)
  live = _device0_bytes([x for s in (out.prompt_stats, out.gen_stats) for x in s if x is not None])
  plan = vp.memory_plan(cfg, data=4, model=2, params="fsdp", batch=8, prompt_tokens=13, new_tokens=5, groups=3,
                        hist=spec.hist, hist_bins=spec.hist_bins)
  assert plan.get("statistics") + plan.get("histogram") == live
  hist = _device0_bytes([out.prompt_stats.hist, out.gen_stats.hist])
  assert plan.get("histogram") == hist and plan.get("statistics") == live - hist
  # The host holds every neuron in 64 bits: the device's share times the model axis, doubled (less the
  # per-group token counts, which every device holds whole).
  assert plan.host_bytes == pytest.approx(2 * 2 * live, rel=0.01)


@pytest.mark.parametrize("hist_bins,data,model,tokens", [("full", 2, 4, 32), (None, 4, 2, 128)])
def test_activation_estimate_is_of_the_order_of_xla_own_count(hist_bins, data, model, tokens):
  """KV cache and activations against the compiled program's temporary bytes per device: within 0.7x-1.8x
  (measured 0.8x-1.7x over a range of shapes on this mesh), an estimate of the order, conservative."""
  cfg = ModelConfig(model_type="llama", vocab_size=2048, hidden_size=128, intermediate_size=1024, num_layers=2,
                    num_heads=4, num_kv_heads=2, head_dim=32, layer_types=("full",) * 2, eos_token_ids=(2,),
                    pad_token_id=0)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: (0.05 * rng.standard_normal(a.shape)).astype(a.dtype), vp.abstract_params(cfg))
  mesh = shd.make_mesh(data, model)
  gen = Generator(shd.shard_params(params, mesh, "fsdp"), cfg, mesh=mesh, pad_id=0, eos_ids=(2,))
  ids = np.random.default_rng(0).integers(3, 2000, size=(8, tokens)).astype(np.int32)
  spec = StatsSpec(4, hist=hist_bins is not None, hist_bins=hist_bins or "full")
  gen(ids, None, 8, group_ids=np.arange(8) % 4, stats=spec)
  (compiled,) = gen._compiled.values()
  xla = compiled.memory_analysis()
  plan = vp.memory_plan(cfg, data=data, model=model, params="fsdp", batch=8, prompt_tokens=tokens, new_tokens=8,
                        groups=4, hist=spec.hist, hist_bins=spec.hist_bins)
  assert xla.argument_size_in_bytes == pytest.approx(plan.get("weights"), rel=0.01)  # weights (+ token ids)
  ratio = (plan.get("KV cache") + plan.get("activations")) / xla.temp_size_in_bytes
  assert 0.7 < ratio < 1.8, ratio


# -- large models, by arithmetic ------------------------------------------------------------------------

def test_a_70b_plan_on_a_pod():
  cfg = vp.read_model_config(os.path.join(FIXTURES, "Llama-3.1-70B"))
  common = dict(dtype="bfloat16", params="fsdp", batch=64, prompt_tokens=256, new_tokens=48, groups=24,
                device_gib=16)
  plan = vp.memory_plan(cfg, data=4, model=16, hist=True, hist_bins="compact", **common)
  # Weights split 16 ways, less the norms every device keeps whole.
  assert plan.get("weights") == pytest.approx(plan.weights_total / 16, rel=1e-3)
  assert plan.rows == 16 and plan.prompt == 256
  F, L = 28672, 80
  assert plan.get("statistics") == 2 * (24 * L * F // 16 * 12 + 2 * 24 * 4)
  assert plan.get("histogram") == 2 * 24 * L * F // 16 * 32 * 4
  assert plan.get("KV cache") == 2 * L * 8 * 16 * 128 * (256 + 48) * 2 // 16
  assert plan.fits and plan.total == sum(i.bytes for i in plan.items)
  assert "fits:" in plan.table() and "does not fit" not in plan.table()
  # 8-way, the bfloat16 weights alone exceed a 16 GiB chip less its headroom.
  eight = vp.memory_plan(cfg, data=8, model=8, **common)
  assert eight.get("weights") > eight.usable and not eight.fits and "does not fit:" in eight.table()
  # The decode layout holds the same bytes (fused, transposed, never a second copy).
  decode = vp.memory_plan(cfg, data=4, model=16, layout="decode", **common)
  assert decode.get("weights") == vp.memory_plan(cfg, data=4, model=16, **common).get("weights")
  # The full histogram: [24, 80, 28672, 301] int32 is 66 GB per set, before splitting.
  full = vp.memory_plan(cfg, data=4, model=16, hist=True, **common)
  assert full.get("histogram") * 16 / 2 == pytest.approx(66.3e9, rel=0.01)
  assert full.host_bytes > 200 * vp.GIB


def test_neurons_split_only_where_the_axis_divides():
  cfg = ModelConfig(model_type="llama", vocab_size=96, hidden_size=64, intermediate_size=81, num_layers=2,
                    num_heads=4, num_kv_heads=2, head_dim=16, layer_types=("full",) * 2)
  plan = vp.memory_plan(cfg, data=1, model=2, params="fsdp", groups=2)
  assert plan.get("statistics") == 2 * (2 * 2 * 81 * 12 + 2 * 2 * 4)  # [G, L, F] whole on every device


def test_bad_inputs_are_user_errors(tmp_path):
  cfg = vp.read_model_config(os.path.join(FIXTURES, "Llama-3.1-8B"))
  for kwargs in (dict(dtype="float16"), dict(batch=0), dict(mode="train"), dict(layout="rows"),
                 dict(hist=True, hist_bins="tiny"), dict(device_gib=0), dict(headroom=1.0),
                 dict(params="fsdp", model=3)):  # 3 does not divide the k projection's 1024 outputs
    with pytest.raises(ValueJaxError):
      vp.memory_plan(cfg, **kwargs)
  with pytest.raises(ValueJaxError, match="no sharding rule matches"):
    vp.memory_plan(cfg, params="fsdp", model=2, rules=((r"^embed$", ("model", None)),))
  (tmp_path / "config.json").write_text('{"model_type": "bert", "vocab_size": 10}')
  with pytest.raises(ValueJaxError, match="not supported"):
    vp.read_model_config(str(tmp_path))
  (tmp_path / "config.json").write_text('{"model_type": "llama"}')
  with pytest.raises(ValueJaxError, match="no field"):
    vp.read_model_config(str(tmp_path / "config.json"))
  with pytest.raises(ValueJaxError, match="no such file"):
    vp.read_model_config(str(tmp_path / "nothing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueJaxError, match="no config.json"):
    vp.read_model_config(str(tmp_path / "empty"))


# -- the launcher ---------------------------------------------------------------------------------------

def _plan(*args: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.run([sys.executable, "-m", "launch.plan", *args], cwd=REPO, capture_output=True, text=True,
                        env=env, timeout=120)


@pytest.mark.subprocess
def test_launcher_prints_the_table_and_the_verdict():
  model = "--model=" + os.path.join(FIXTURES, "Llama-3.1-70B")
  pod = ["--mesh_data=4", "--mesh_model=16", "--params=fsdp", "--dtype=bfloat16", "--batch=64", "--hist",
         "--hist_bins=compact", "--device_gib=16"]
  proc = _plan(model, *pod)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  for row in ("weights", "KV cache", "activations", "statistics", "histogram", "total"):
    assert any(line.startswith(row) and "iB" in line for line in lines), (row, proc.stdout)
  assert lines[-1].startswith("fits: ") and "8.22 GiB" in proc.stdout
  small = _plan(model, "--mesh_data=8", "--mesh_model=8", "--params=fsdp", "--dtype=bfloat16", "--device_gib=16")
  assert small.returncode == 0 and small.stdout.splitlines()[-1].startswith("does not fit: "), small.stdout
  # Values the flags leave out come from the run config (mesh, dtype, record settings).
  from_config = _plan(model, "--config.mesh.model=16", "--config.mesh.params=fsdp", "--config.mesh.data=4",
                      "--config.record.batch_size=64")
  assert from_config.returncode == 0, from_config.stderr
  assert "4 x 16 (data x model)" in from_config.stdout and "64 rows (16 per device)" in from_config.stdout
  assert "groups     8," in from_config.stdout  # valuelocate: four higher-order values, each with its reversed
  exploration = _plan(model, "--config=" + os.path.join(REPO, "configs", "valueexploration.py"), "--devices=8",
                      "--mesh_model=8", "--params=fsdp")
  assert "groups     24," in exploration.stdout and "1 x 8 (data x model)" in exploration.stdout, exploration.stderr


@pytest.mark.parametrize("args,needle", [
    (["--model=/no/such/config.json"], "no such file"),
    (["--model=" + os.path.join(REPO, "README.md")], "invalid JSON"),
    ([], "--model"),
    (["--model=" + os.path.join(FIXTURES, "Qwen2-7B"), "--dtype=float16"], "float16"),
    (["--model=" + os.path.join(FIXTURES, "Qwen2-7B"), "--devices=7", "--mesh_model=2"], "does not divide"),
    (["--model=" + os.path.join(FIXTURES, "Qwen2-7B"), "--mesh_data=1", "--mesh_model=5", "--params=fsdp"],
     "does not split"),
])
def test_launcher_refuses_bad_input_in_one_paragraph(args, needle):
  """In this process, through the launcher's flag parsing and error boundary (helpers.launch_in_process)."""
  from tests.helpers import launch_in_process
  proc = launch_in_process("launch.plan", *args)
  assert proc.returncode == 2, (proc.stdout, proc.stderr)
  assert proc.stderr.startswith("error: ") and needle in proc.stderr and "Traceback" not in proc.stderr
  assert len(proc.stderr.strip().splitlines()) <= 2  # what is wrong, and what to do


@pytest.mark.subprocess
def test_launcher_process_refuses_bad_input_in_one_paragraph():
  """The same boundary end to end: `python -m launch.plan` exits 2 with one paragraph and no traceback."""
  proc = _plan("--model=" + os.path.join(FIXTURES, "Qwen2-7B"), "--devices=7", "--mesh_model=2")
  assert proc.returncode == 2, (proc.stdout, proc.stderr)
  assert proc.stderr.startswith("error: ") and "does not divide" in proc.stderr and "Traceback" not in proc.stderr
  assert len(proc.stderr.strip().splitlines()) <= 2
