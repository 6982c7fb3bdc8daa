"""What a 70B run on a pod relies on, checked on tiny models and 8 virtual CPU devices: the weights held once,
every weight of every layout split by a sharding rule, statistics split over the model axis, a compact
histogram for v95, and bfloat16 weights with float32 statistics."""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import tiny_models
from valuejax.engine import sharding as shd
from valuejax.engine.generate import Generator, StatsSpec, TeacherForcer
from valuejax.engine.histogram import COMPACT_EDGES, HIST_EDGES
from valuejax.errors import ValueJaxError
from valuejax.models.forward import KVCache, relayout


def _live_bytes(exclude: set[int]) -> int:
  gc.collect()
  return sum(a.nbytes for a in jax.live_arrays() if id(a) not in exclude and not a.is_deleted())


def _nbytes(tree) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("layout", ["stacked", "decode"])
def test_a_generator_holds_no_copy_of_the_weights(layout):
  """After building a Generator and running one batch, the live device bytes are at most 1.1 x (weights +
  KV cache + statistics): the engine decodes from the one copy the caller holds."""
  before = {id(a) for a in jax.live_arrays()}
  _, cfg, params = tiny_models.valuejax_model("llama")
  params = relayout(params, cfg, layout, parts=2, donate=True)
  weights = _nbytes(params)
  ids, mask = tiny_models.padded_batch(lengths=(7, 11, 4, 9), total=11, left=(True,) * 4)
  gen = Generator(params, cfg, pad_id=0, eos_ids=(2,), batch_buckets=None)
  new = 6
  out = gen(ids, mask, new, group_ids=np.array([0, 1, 0, 1], np.int32), stats=StatsSpec(2))
  stats = _nbytes(out.prompt_stats) + _nbytes(out.gen_stats)
  slots = 16 + new  # the prompt bucket and the new tokens
  k = jax.eval_shape(lambda: KVCache.zeros(cfg, 4, slots)).k
  kv = 2 * int(np.prod(k.shape)) * k.dtype.itemsize
  live = _live_bytes(before)
  assert live <= 1.1 * (weights + kv + stats), (live, weights, kv, stats)
  assert live >= weights  # the weights themselves are still there
  del gen, out


def _mesh_shards(tree):
  """For every leaf: (its name, its bytes, the bytes each device holds)."""
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    out.append((shd.path_name(path), leaf.nbytes, {s.data.nbytes for s in leaf.addressable_shards}))
  return out


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2", "gemma3_text"])
@pytest.mark.parametrize("layout,parts", [("stacked", 1), ("decode", 1), ("decode", 2)])
def test_fsdp_rules_split_every_weight_matrix_of_every_layout(arch, layout, parts):
  """On a 4x2 mesh each device holds 1/2 of every weight matrix, read from the arrays' shards; only 1-d
  weights (norm scales, output biases) are whole on every device."""
  _, cfg, params = tiny_models.valuejax_model(arch)
  params = relayout(params, cfg, layout, parts=parts)
  mesh = shd.make_mesh(4, 2)
  sharded = shd.shard_params(params, mesh, "fsdp")
  for name, total, per_device in _mesh_shards(sharded):
    leaf_ndim = len(next(x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
                         if shd.path_name(p) == name).shape)
    if leaf_ndim >= 2 and not name.startswith("layers/") or leaf_ndim >= 2 and layout == "decode":
      assert per_device == {total // 2}, (name, total, per_device)
    elif leaf_ndim >= 3:  # stacked matrices [L, in, out]
      assert per_device == {total // 2}, (name, total, per_device)
    else:
      assert per_device in ({total}, {total // 2}), name


def test_sharding_rules_come_from_the_config_and_a_large_unmatched_weight_is_an_error():
  _, cfg, params = tiny_models.valuejax_model("llama")
  mesh = shd.make_mesh(4, 2)
  # A rule set without the MLP's down projection: small weights fall back to whole copies, large ones fail.
  rules = tuple(r for r in shd.FSDP_RULES if "down" not in r[0])
  with pytest.raises(ValueJaxError, match=r"no sharding rule matches weight layers/down/kernel"):
    shd.shard_params(params, mesh, "fsdp", rules, replicate_below=1024)
  specs = shd.param_specs(params, dict(mesh.shape), "fsdp", rules)  # the default threshold: tiny is small
  assert specs["layers"]["down"]["kernel"] == jax.sharding.PartitionSpec()
  # Rules given by the config replace the mode's: here everything on the model axis's first dimension.
  own = (("^layers/.*/kernel$", (None, "model")), (".*", ()))
  sharded = shd.shard_params(params, mesh, "fsdp", own)
  assert sharded["layers"]["q"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "model")
  assert sharded["embed"].sharding.spec == jax.sharding.PartitionSpec()
  # A split the axis does not divide: an error for a large weight, a whole copy for a small one.
  odd = (("^embed$", ("model",)),) + shd.FSDP_RULES
  params3 = {**params, "embed": jnp.zeros((95, 64))}
  with pytest.raises(ValueJaxError, match="does not split"):
    shd.param_specs(params3, {"data": 4, "model": 2}, "fsdp", odd, replicate_below=1024)
  for bad, match in (((("(", ()),), "does not compile"), (((".*", ("rows",)),), "names axes"),
                     ((("x",),), "not a \\(regex, spec\\) pair")):
    with pytest.raises(ValueJaxError, match=match):
      shd.rules_for("fsdp", bad)


def test_a_config_with_bad_sharding_rules_fails_before_anything_loads():
  from configs import common
  from valuejax.validate import check_config
  c = common.base_config("valuelocate")
  c.mesh.rules = (("[", ()),)
  with pytest.raises(ValueJaxError, match="mesh.rules"):
    check_config(c)
  c.mesh.rules = ()
  c.layout = "diagonal"
  with pytest.raises(ValueJaxError, match="layout"):
    check_config(c)


@pytest.mark.parametrize("layout", ["stacked", "decode"])
def test_statistics_stay_split_over_the_model_axis(layout):
  """[G, L, F] sums and the histogram come back split over neurons (each device 1/2), equal to one device's."""
  _, cfg, params = tiny_models.valuejax_model("llama")
  ids, mask = tiny_models.padded_batch(lengths=(7, 11, 4, 9, 3, 10, 6, 8), total=11, left=(True,) * 8, seed=3)
  groups = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
  spec = StatsSpec(3, hist=True, hist_bins="compact")
  single = Generator(params, cfg, pad_id=0, eos_ids=(2,))(ids, mask, 5, group_ids=groups, stats=spec)
  mesh = shd.make_mesh(4, 2)
  sharded = shd.shard_params(relayout(params, cfg, layout, parts=1), mesh, "fsdp")
  multi = Generator(sharded, cfg, mesh=mesh, pad_id=0, eos_ids=(2,))(ids, mask, 5, group_ids=groups, stats=spec)
  np.testing.assert_array_equal(single.tokens, multi.tokens)
  for name in ("count", "s1", "s2", "hist"):
    for which in ("prompt_stats", "gen_stats"):
      x = getattr(getattr(multi, which), name)
      shapes = {s.data.shape for s in x.addressable_shards}
      assert shapes == {(3, cfg.num_layers, cfg.intermediate_size // 2) + x.shape[3:]}, (which, name, shapes)
      want = np.asarray(getattr(getattr(single, which), name))
      if name in ("count", "hist"):
        np.testing.assert_array_equal(np.asarray(x).sum(-1) if name == "hist" else np.asarray(x),
                                      want.sum(-1) if name == "hist" else want)
      else:
        np.testing.assert_allclose(np.asarray(x), want, rtol=1e-5, atol=1e-5)
  assert len(multi.gen_stats.tokens.sharding.device_set) == 8 and multi.gen_stats.tokens.sharding.is_fully_replicated
  # Teacher forcing keeps them split too.
  tf = TeacherForcer(sharded, cfg, mesh=mesh, pad_id=0)(ids, mask, groups, spec)
  assert {s.data.shape[2] for s in tf.count.addressable_shards} == {cfg.intermediate_size // 2}


def test_compact_histogram_v95_agrees_with_the_full_histogram():
  """Both histograms of the same tokens: the compact v95 lies within the width of its bin (plus the full
  layout's 0.01) of the full v95, as both bracket the same order statistic."""
  from valuejax.locate.contrast import hist_quantile
  _, cfg, params = tiny_models.valuejax_model("llama")
  rng = np.random.default_rng(0)
  ids = rng.integers(3, 96, (16, 48)).astype(np.int32)
  mask = np.ones_like(ids)
  groups = np.repeat(np.arange(2, dtype=np.int32), 8)
  tf = TeacherForcer(params, cfg, pad_id=0)
  full = np.asarray(tf(ids, mask, groups, StatsSpec(2, hist=True)).hist)
  compact = np.asarray(tf(ids, mask, groups, StatsSpec(2, hist=True, hist_bins="compact")).hist)
  assert compact.shape[-1] == COMPACT_EDGES.size + 1 == 32
  np.testing.assert_array_equal(full.sum(-1), compact.sum(-1))
  vf = hist_quantile(full, 0.95, HIST_EDGES)
  vc = hist_quantile(compact, 0.95, COMPACT_EDGES)
  inside = (vf > 0) & (vf < HIST_EDGES[-1])  # the full layout's open bins give bounds, not values
  assert inside.mean() > 0.5
  k = np.searchsorted(COMPACT_EDGES, vf[inside], side="left")
  width = np.diff(np.concatenate([COMPACT_EDGES, [np.inf]]))[np.clip(k - 1, 0, COMPACT_EDGES.size - 1)]
  assert np.all(np.abs(vc[inside] - vf[inside]) <= width + 0.01 + 1e-9)
  rel = np.abs(vc[inside] - vf[inside]) / vf[inside]
  assert np.median(rel) < 0.05  # measured here: see the docstring of engine/histogram.py


def test_compact_statistics_locate_with_their_own_edges(tmp_path):
  from valuejax.engine.stats import NeuronStats
  from valuejax.locate import valuelocate_pair
  _, cfg, params = tiny_models.valuejax_model("llama")
  rng = np.random.default_rng(1)
  ids = rng.integers(3, 96, (8, 32)).astype(np.int32)
  groups = np.repeat(np.arange(2, dtype=np.int32), 4)
  stats = NeuronStats.zeros(("a", "b"), cfg.num_layers, cfg.intermediate_size, hist=True, hist_bins="compact")
  stats = stats.add(TeacherForcer(params, cfg, pad_id=0)(ids, np.ones_like(ids), groups,
                                                         StatsSpec(2, hist=True, hist_bins="compact")))
  stats.save(str(tmp_path / "s.npz"))
  back = NeuronStats.load(str(tmp_path / "s.npz"))
  assert back == stats and np.array_equal(back.hist_edges, COMPACT_EDGES)
  ns = valuelocate_pair(back.count, back.tokens, back.group_names, "a", "b", hist=back.hist,
                        hist_edges=back.hist_edges, size=10)
  v95 = ns.groups["a"].scores["v95"]
  assert np.isfinite(v95).all() and v95.max() <= COMPACT_EDGES[-1]
  with pytest.raises(ValueJaxError, match="compact"):
    NeuronStats.zeros(("a", "b"), cfg.num_layers, cfg.intermediate_size, hist=True).add(back)


def test_bfloat16_weights_locate_the_neurons_float32_does_where_the_margins_allow():
  """bfloat16 weights, float32 statistics and softmax: the activation probabilities move by bf16 rounding
  only, and every neuron whose float32 contrast clears the selection cut by more than that keeps its side."""
  from valuejax.locate import activation_probability, valuelocate_pair
  _, cfg, params = tiny_models.valuejax_model("llama")
  bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  rng = np.random.default_rng(2)
  ids = rng.integers(3, 96, (16, 64)).astype(np.int32)
  mask = np.ones_like(ids)
  groups = np.repeat(np.arange(2, dtype=np.int32), 8)
  spec = StatsSpec(2)
  s32 = TeacherForcer(params, cfg, pad_id=0)(ids, mask, groups, spec)
  s16 = TeacherForcer(bf16, cfg, pad_id=0)(ids, mask, groups, spec)
  assert s16.s1.dtype == jnp.float32  # statistics are float32 whatever the weights
  np.testing.assert_array_equal(np.asarray(s32.tokens), np.asarray(s16.tokens))
  p32 = activation_probability(np.asarray(s32.count), np.asarray(s32.tokens))
  p16 = activation_probability(np.asarray(s16.count), np.asarray(s16.tokens))
  drift = np.abs(p32 - p16).max()
  assert drift < 0.1  # measured: a few tokens near a = 0 change sign
  size = 24
  a32 = valuelocate_pair(s32.count, s32.tokens, ("a", "b"), "a", "b", size=size)
  a16 = valuelocate_pair(s16.count, s16.tokens, ("a", "b"), "a", "b", size=size)
  delta = (p32[0] - p32[1]).ravel()
  cut = np.sort(delta)[::-1][size - 1]
  sure = np.abs(delta - cut) > 2 * drift  # far from the cut by more than bf16 can move a contrast
  chosen32 = np.zeros(delta.size, bool)
  chosen16 = np.zeros(delta.size, bool)
  for chosen, ns in ((chosen32, a32), (chosen16, a16)):
    g = ns.groups["a"]
    chosen[np.asarray(g.layer) * cfg.intermediate_size + np.asarray(g.index)] = True
  assert sure.sum() > delta.size // 2
  np.testing.assert_array_equal(chosen32[sure], chosen16[sure])
