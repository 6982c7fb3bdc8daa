"""valuejax.models.layout: `param_shapes` is the tree the converter builds and the relayout makes, for every
architecture and both layouts, and the sharding rules place all of it; `layout_of` tells the layouts apart;
the converter refuses a tree that differs from it; and an engine built before `Model.relayout` refuses to
run instead of reading freed buffers."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import tiny_models
from valuejax.engine import sharding as shd
from valuejax.engine.generate import Generator, StatsSpec, TeacherForcer
from valuejax.errors import ValueJaxError
from valuejax.models import convert, layout as vl
from valuejax.models.loading import Model

_REPLACED = "this Generator was built on params that Model.relayout replaced; build it again"


def _shapes(tree):
  return jax.tree.map(lambda a: (tuple(a.shape), np.dtype(a.dtype)), tree)


@pytest.mark.parametrize("arch", tiny_models.ARCHS)
def test_param_shapes_are_the_loaded_and_relaid_trees(arch):
  """Every leaf, with its shape and dtype, of the converter's stacked tree and of its decode relayouts
  (whole matrices and row blocks); and the stacked tree comes back bit for bit (the fused widths that
  stack_layers splits at are param_shapes')."""
  _, cfg, params = tiny_models.valuejax_model(arch)
  assert vl.layout_of(params) == "stacked"
  assert _shapes(params) == _shapes(vl.param_shapes(cfg, "stacked"))
  for parts in (1, 3):
    decode = vl.relayout(params, cfg, "decode", parts)
    assert vl.layout_of(decode) == "decode"
    assert _shapes(decode) == _shapes(vl.param_shapes(cfg, "decode", parts))
    back = vl.relayout(decode, cfg, "stacked")
    assert vl.layout_of(back) == "stacked" and jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert jax.tree.leaves(vl.param_shapes(cfg, dtype=jnp.bfloat16))[0].dtype == jnp.bfloat16
  with pytest.raises(ValueJaxError, match="layout 'scan' is unknown"):
    vl.param_shapes(cfg, "scan")


@pytest.mark.parametrize("arch", tiny_models.ARCHS)
@pytest.mark.parametrize("layout,parts", [("stacked", 1), ("decode", 1), ("decode", 2)])
def test_fsdp_rules_split_every_matrix_of_param_shapes(arch, layout, parts):
  """On a model axis of 2, every weight matrix of either layout is split along one dimension (never a stacked
  layer axis), and only 1-d weights (norms, biases that are whole) stay whole."""
  cfg = tiny_models.valuejax_model(arch)[1]
  tree = vl.param_shapes(cfg, layout, parts)
  specs = shd.param_specs(tree, {"data": 4, "model": 2}, "fsdp", replicate_below=0)
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  spec_leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  for (path, leaf), spec in zip(flat, spec_leaves):
    name, spec = shd.path_name(path), tuple(spec)
    matrix = leaf.ndim - (1 if layout == "stacked" and name.startswith("layers/") else 0) >= 2
    if matrix:
      assert spec.count("model") == 1, (name, spec)
    else:  # norms are whole; the input projections' biases split as their outputs do
      assert spec.count("model") == 0 or name.endswith("bias"), (name, spec)
    if layout == "stacked" and name.startswith("layers/") and spec:
      assert spec[0] is None, name  # the layer axis is never split


def test_converter_checks_every_weight_against_param_shapes():
  _, cfg, params = tiny_models.valuejax_model("qwen2")
  numpy_params = jax.tree.map(np.asarray, params)
  convert.check_shapes(numpy_params, cfg)
  assert convert.expected_shapes(cfg)["layers/gate/kernel"] == (3, 64, 80)
  missing = {**numpy_params, "layers": {k: v for k, v in numpy_params["layers"].items() if k != "up"}}
  with pytest.raises(ValueJaxError, match="weight layers/up/kernel is missing"):
    convert.check_shapes(missing, cfg)
  wrong = {**numpy_params, "layers": {**numpy_params["layers"], "k": {"kernel": np.zeros((3, 64, 16)),
                                                                      "bias": np.zeros((3, 32))}}}
  with pytest.raises(ValueJaxError, match=r"layers/k/kernel has shape \(3, 64, 16\), but config.json implies "
                                          r"\(3, 64, 32\)"):
    convert.check_shapes(wrong, cfg)
  extra = {**numpy_params, "lm_head": np.zeros((64, 96))}  # qwen2 here ties its head to the embedding
  with pytest.raises(ValueJaxError, match="weights lm_head are not part of the qwen2 layout"):
    convert.check_shapes(extra, cfg)


def _model(arch="llama"):
  _, cfg, params = tiny_models.valuejax_model(arch)
  params = jax.tree.map(jnp.array, params)  # arrays of this test's own: relayout deletes them
  return Model(config=cfg, params=params, tokenizer=None, hf_config={}, source="")


@pytest.mark.parametrize("to", ["decode", "stacked"])
def test_an_engine_built_before_relayout_refuses_to_run(to):
  model = _model()
  if to == "stacked":
    model.relayout("decode", parts=2)
  ids, mask = tiny_models.padded_batch()
  stats = StatsSpec(1)
  gen = Generator(model.params, model.config, pad_id=0, eos_ids=(2,))
  forcer = TeacherForcer(model.params, model.config, pad_id=0)
  before = gen(ids, mask, 3).tokens
  model.relayout(to, parts=2)
  with pytest.raises(ValueJaxError, match=_REPLACED):
    gen(ids, mask, 3)
  with pytest.raises(ValueJaxError, match=_REPLACED.replace("Generator", "TeacherForcer")):
    forcer(ids, mask, np.zeros(len(ids), np.int32), stats)
  # Built again on the model's params, it runs, and gives the same tokens (greedy decoding of the same
  # weights in another layout: summation order only, which these few steps of a tiny model do not flip).
  again = Generator(model.params, model.config, pad_id=0, eos_ids=(2,))(ids, mask, 3).tokens
  np.testing.assert_array_equal(again, before)
  TeacherForcer(model.params, model.config, pad_id=0)(ids, mask, np.zeros(len(ids), np.int32), stats)


def test_relayout_to_the_same_layout_keeps_engines_valid():
  model = _model()
  gen = Generator(model.params, model.config, pad_id=0, eos_ids=(2,))
  ids, mask = tiny_models.padded_batch()
  model.relayout("stacked")
  assert not vl.replaced(model.params)
  gen(ids, mask, 2)


def test_bos_is_a_fact_of_the_config():
  from valuejax.models.config import ModelConfig
  for arch in tiny_models.ARCHS:
    cfg = ModelConfig.from_hf(tiny_models.hf_config(arch))
    assert cfg.bos_first == arch.startswith("gemma")
    assert cfg.prompt_bos_id == (1 if arch.startswith("gemma") else None)
  cfg = dataclasses.replace(ModelConfig.from_hf(tiny_models.hf_config("llama")), bos_first=True)
  assert cfg.prompt_bos_id == 1  # whatever the family: the field decides
