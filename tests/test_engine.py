"""Generation and on-device statistics: parity with transformers' generate and with brute-force numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests import tiny_models
from valuejax.engine import sharding as shd
from valuejax.engine.generate import Generator, Sampling, StatsSpec, TeacherForcer, generate
from valuejax.engine.stats import HIST_BINS, NeuronStats
from valuejax.errors import ValueJaxError
from valuejax.models.edit import NeuronEdit
from valuejax.models.forward import forward, unstack_layers


def _prompts(seed=0):
  return tiny_models.padded_batch(lengths=(7, 11, 4, 9), total=11, left=(True, True, True, True), seed=seed)


def _hf_generate(model, ids, mask, new, penalty):
  with torch.no_grad():
    out = model.generate(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                         max_new_tokens=new, do_sample=False, repetition_penalty=penalty, pad_token_id=0,
                         eos_token_id=2)
  return out[:, ids.shape[1]:].numpy()


def _trim(row, eos=2):
  row = list(row)
  return row[:row.index(eos)] if eos in row else row


@pytest.mark.parametrize("arch,segments", [("llama", None), ("gemma2", 3), ("gpt2", 5)])
@pytest.mark.slow
def test_greedy_matches_transformers_generate(arch, segments):
  """segments: the decode loop in that many segments, each with a cache of its own steps' slots."""
  model, cfg, params = tiny_models.valuejax_model(arch)
  ids, mask = _prompts()
  new = 12
  ref = _hf_generate(model, ids, mask, new, 1.1)
  out = generate(params, cfg, ids, mask, new, sampling=Sampling(repetition_penalty=1.1), pad_id=0, eos_ids=(2,),
                 segments=segments)
  for i in range(len(ids)):
    assert _trim(out.tokens[i]) == _trim(ref[i]), f"row {i}"
    assert out.lengths[i] == len(_trim(ref[i]))


def _brute_force(params, cfg, ids, mask, out, groups, num_groups):
  """Reference statistics from one full forward over prompt + response, reduced with numpy."""
  b = len(ids)
  rows, kinds = [], []
  for i in range(b):
    prompt = list(ids[i][mask[i].astype(bool)])
    resp = list(out.tokens[i][:out.lengths[i]])
    rows.append(prompt + resp)
    kinds.append([0] * len(prompt) + [1] * len(resp))
  t = max(map(len, rows))
  full = np.zeros((b, t), np.int32)
  fmask = np.zeros((b, t), np.int32)
  kind = np.full((b, t), -1)
  for i, (r, k) in enumerate(zip(rows, kinds)):
    full[i, :len(r)], fmask[i, :len(r)], kind[i, :len(r)] = r, 1, k
  _, act = forward(params, cfg, jnp.asarray(full), jnp.asarray(fmask), capture="act", logits="none")
  act = np.asarray(act, np.float64)  # [L, B, T, F]
  # The engine computes the same activations in another arithmetic order (row blocks, a cache, a shared
  # prefix): one lying within float32 rounding of 0 may fall on the other side of it there.
  tol = tiny_models.reorder_atol(act, tiny_models.forward_terms(cfg))
  res = {}
  for which in (0, 1):
    g_shape = (num_groups, cfg.num_layers, cfg.intermediate_size)
    c, s1, s2 = np.zeros(g_shape, np.int64), np.zeros(g_shape), np.zeros(g_shape)
    near = np.zeros(g_shape, np.int64)
    tok, items = np.zeros(num_groups, np.int64), np.zeros(num_groups, np.int64)
    for i in range(b):
      sel = kind[i] == which
      a = act[:, i, sel]  # [L, n, F]
      g = groups[i]
      c[g] += (a > 0).sum(1)
      near[g] += (np.abs(a) <= tol).sum(1)
      s1[g] += a.sum(1)
      s2[g] += (a * a).sum(1)
      tok[g] += sel.sum()
      items[g] += sel.any()
    res[which] = dict(count=c, s1=s1, s2=s2, tokens=tok, items=items, act=act, kind=kind, near_zero=near)
  return res


def _check(stats, ref):
  np.testing.assert_array_equal(np.asarray(stats.tokens), ref["tokens"])
  np.testing.assert_array_equal(np.asarray(stats.items), ref["items"])
  # Counts are exact except for activations within float32 rounding of 0 (see _brute_force), and those
  # are rare: the test still fails on any real miscount.
  diff = np.abs(np.asarray(stats.count, np.int64) - ref["count"])
  assert (diff <= ref["near_zero"]).all(), f"{int((diff > ref['near_zero']).sum())} neurons miscounted"
  assert diff.sum() <= max(2, diff.size // 1000)
  for k in ("s1", "s2"):
    np.testing.assert_allclose(np.asarray(stats.__getattribute__(k)), ref[k], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("arch,segments", [("llama", 1), ("gemma3_text", 3)])
@pytest.mark.slow
def test_generation_statistics_equal_brute_force(arch, segments):
  _, cfg, params = tiny_models.valuejax_model(arch)
  ids, mask = _prompts(seed=1)
  groups = np.array([0, 1, 0, 2], np.int32)
  gen = Generator(params, cfg, pad_id=0, eos_ids=(2,), segments=segments)
  out = gen(ids, mask, 10, sampling=Sampling(repetition_penalty=1.1), group_ids=groups, stats=StatsSpec(3))
  ref = _brute_force(params, cfg, ids, mask, out, groups, 3)
  _check(out.prompt_stats, ref[0])
  _check(out.gen_stats, ref[1])
  assert int(np.asarray(out.gen_stats.tokens).sum()) == int(out.lengths.sum())


def test_histogram_and_teacher_forced_statistics():
  _, cfg, params = tiny_models.valuejax_model("qwen3")
  ids, mask = tiny_models.padded_batch(lengths=(7, 11, 4), total=11, left=(True, False, True))
  groups = np.array([1, 0, 1], np.int32)
  tf = TeacherForcer(params, cfg)
  st = tf(ids, mask, groups, StatsSpec(2, hist=True))
  _, act = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act", logits="none")
  act = np.asarray(act, np.float64)
  hist = np.zeros((2, cfg.num_layers, cfg.intermediate_size, HIST_BINS), np.int64)
  for i in range(3):
    a = act[:, i, mask[i].astype(bool)]  # [L, n, F]
    k = np.clip(np.ceil(a.astype(np.float32) / np.float32(0.01)), 0, HIST_BINS - 1).astype(int)
    for l in range(cfg.num_layers):
      for f in range(cfg.intermediate_size):
        hist[groups[i], l, f] += np.bincount(k[l, :, f], minlength=HIST_BINS)
  np.testing.assert_array_equal(np.asarray(st.hist), hist)
  np.testing.assert_array_equal(np.asarray(st.count), hist[..., 1:].sum(-1))
  assert np.asarray(st.tokens).tolist() == [11, 11]


def test_counts_do_not_overflow_on_the_host():
  stats = NeuronStats.zeros(["a"], 1, 2)
  big = NeuronStats(("a",), np.array([2 ** 31], np.int64), np.array([5], np.int64),
                    np.full((1, 1, 2), 2 ** 31, np.int64), np.ones((1, 1, 2)), np.ones((1, 1, 2)))
  for _ in range(3):
    stats = stats.add(big)
  assert stats.tokens[0] == 3 * 2 ** 31 and stats.count.max() == 3 * 2 ** 31
  np.testing.assert_allclose(stats.p, 1.0)


def _stats_tuple(out):
  return [np.asarray(x) for x in jax.tree.leaves((out.prompt_stats, out.gen_stats))]


def _assert_same_stats(x, y):
  """Statistics of the same tokens computed in differently shaped batches: counts exact, sums close."""
  for a, b, name in zip(_stats_tuple(x), _stats_tuple(y), ["tokens", "items", "count", "s1", "s2", "hist"] * 2):
    if name == "hist":
      # Matmul blocking differs with the shapes and rounds differently in the last bit, so a value lying on a
      # bin edge may land in the neighbouring bin: totals are exact and any difference is a move to an
      # adjacent bin.
      np.testing.assert_array_equal(a.sum(-1), b.sum(-1))
      moved = np.cumsum(a - b, axis=-1)
      assert np.abs(moved).max() <= 1 and (moved != 0).mean() < 1e-3
    elif np.issubdtype(a.dtype, np.integer):
      np.testing.assert_array_equal(a, b, err_msg=name)
    else:
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("mesh_shape,mode", [((8, 1), "replicated"), ((4, 2), "fsdp")])
@pytest.mark.slow
def test_eight_devices_give_the_statistics_of_one(mesh_shape, mode):
  assert jax.device_count() == 8
  _, cfg, params = tiny_models.valuejax_model("llama")
  ids, mask = tiny_models.padded_batch(lengths=(7, 11, 4, 9, 3, 10, 6, 8, 5, 2), total=11, left=(True,) * 10,
                                       seed=3)
  groups = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], np.int32)
  spec = StatsSpec(3, hist=True)
  single = Generator(params, cfg, pad_id=0, eos_ids=(2,))(ids, mask, 8, group_ids=groups, stats=spec)
  mesh = shd.make_mesh(*mesh_shape)
  sharded_params = shd.shard_params(params, mesh, mode)
  if mode == "fsdp":
    assert sharded_params["layers"]["gate"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, None, "model")
  multi = Generator(sharded_params, cfg, mesh=mesh, pad_id=0, eos_ids=(2,))(ids, mask, 8, group_ids=groups,
                                                                            stats=spec)
  np.testing.assert_array_equal(single.tokens, multi.tokens)
  _assert_same_stats(single, multi)


@pytest.mark.slow
def test_sampling_is_seeded_and_top_p_tiny_is_greedy():
  _, cfg, params = tiny_models.valuejax_model("mistral")
  ids, mask = _prompts()
  gen = Generator(params, cfg, pad_id=0, eos_ids=())
  hot = Sampling(temperature=1.5)
  a = gen(ids, mask, 10, sampling=hot, seed=7).tokens
  b = gen(ids, mask, 10, sampling=hot, seed=7).tokens
  c = gen(ids, mask, 10, sampling=hot, seed=8).tokens
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  greedy = gen(ids, mask, 10).tokens
  nucleus = gen(ids, mask, 10, sampling=Sampling(temperature=1.0, top_p=1e-6), seed=3).tokens
  np.testing.assert_array_equal(greedy, nucleus)


@pytest.mark.slow
def test_edits_in_generation_respect_their_scope():
  _, cfg, params = tiny_models.valuejax_model("llama")
  ids, mask = _prompts()
  groups = np.zeros(4, np.int32)
  gen = Generator(params, cfg, pad_id=0, eos_ids=())
  base = gen(ids, mask, 6, group_ids=groups, stats=StatsSpec(1))
  scale = np.ones((cfg.num_layers, cfg.intermediate_size), np.float32)
  scale[0, :10] = 0.0
  edit = NeuronEdit.identity(cfg.num_layers, cfg.intermediate_size)._replace(scale=jnp.asarray(scale))
  out = gen(ids, mask, 6, group_ids=groups, stats=StatsSpec(1), edit=edit, edit_scope="generated")
  np.testing.assert_array_equal(np.asarray(out.prompt_stats.count), np.asarray(base.prompt_stats.count))
  assert np.asarray(out.gen_stats.count)[0, 0, :10].sum() == 0
  assert np.asarray(base.gen_stats.count)[0, 0, :10].sum() > 0
  both = gen(ids, mask, 6, group_ids=groups, stats=StatsSpec(1), edit=edit, edit_scope="all")
  assert np.asarray(both.prompt_stats.count)[0, 0, :10].sum() == 0


@pytest.mark.slow
def test_one_compile_per_bucket():
  _, cfg, params = tiny_models.valuejax_model("qwen2")
  gen = Generator(params, cfg, pad_id=0, eos_ids=(2,), prompt_buckets=(8, 16))
  for seed in range(3):
    ids, mask = tiny_models.padded_batch(lengths=(3 + seed, 5), total=8, left=(True, False), seed=seed)
    gen(ids, mask, 4)
  assert len(gen._compiled) == 1
  ids, mask = tiny_models.padded_batch(lengths=(12, 5), total=12, left=(True, False))
  gen(ids, mask, 4)
  assert len(gen._compiled) == 2


@pytest.mark.slow
def test_batch_buckets_add_empty_rows_that_change_nothing():
  """A batch runs as its bucket's size, the rest empty rows: tokens (greedy and sampled), lengths and exact
  counts equal those of the batch run as it is, and batch sizes of one bucket share an executable."""
  _, cfg, params = tiny_models.valuejax_model("llama")
  ids4, mask4 = _prompts(seed=3)
  ids, mask = ids4[:3], mask4[:3]
  groups = np.array([0, 1, 0], np.int32)
  padded = Generator(params, cfg, pad_id=0, eos_ids=(2,))
  exact = Generator(params, cfg, pad_id=0, eos_ids=(2,), batch_buckets=None)
  kw = dict(seed=5, group_ids=groups, stats=StatsSpec(2, hist=True))
  for sampling in (Sampling(repetition_penalty=1.1), Sampling(temperature=1.3, top_p=0.9)):
    a = padded(ids, mask, 7, sampling=sampling, **kw)
    b = exact(ids, mask, 7, sampling=sampling, **kw)
    assert a.tokens.shape == (3, 7)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    _assert_same_stats(a, b)
  assert [key[0] for key in padded._compiled] == [4, 4] and [key[0] for key in exact._compiled] == [3, 3]
  padded(ids4, mask4, 7, sampling=Sampling(repetition_penalty=1.1), seed=5, group_ids=np.array([0, 1, 0, 1]),
         stats=StatsSpec(2, hist=True))
  assert len(padded._compiled) == 2  # 4 rows: the executable of 3
  many = np.concatenate([ids4] * 5)[:17], np.concatenate([mask4] * 5)[:17]
  gen = Generator(params, cfg, pad_id=0, eos_ids=(2,))
  assert len(gen(*many, 3).tokens) == 17 and [key[0] for key in gen._compiled] == [24]
  tf = TeacherForcer(params, cfg)(ids, mask, groups, StatsSpec(2))
  tf_exact = TeacherForcer(params, cfg, batch_buckets=None)(ids, mask, groups, StatsSpec(2))
  for x, y in zip(jax.tree.leaves(tf), jax.tree.leaves(tf_exact)):
    # Statistics summed over the batch's tokens, each computed in another matmul shape: float32 reordering.
    terms = tiny_models.forward_terms(cfg) + ids.size
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=tiny_models.reorder_atol(y, terms))
  with pytest.raises(ValueJaxError, match="batch buckets"):
    Generator(params, cfg, batch_buckets=(0, 8))


@pytest.mark.slow
def test_unrolled_and_scanned_layers_agree():
  """Generation over unstacked (unrolled) layers equals the lax.scan path, statistics and edits included
  (a random push too: both paths fold the same layer index into the key)."""
  _, cfg, params = tiny_models.valuejax_model("gemma2")
  ids, mask = _prompts(seed=2)
  groups = np.array([0, 1, 0, 1], np.int32)
  scale = np.ones((cfg.num_layers, cfg.intermediate_size), np.float32)
  scale[1, :7] = 3.0
  add = np.zeros_like(scale)
  add[:, 9:15] = 0.5
  edit = NeuronEdit.identity(cfg.num_layers, cfg.intermediate_size)._replace(
      scale=jnp.asarray(scale), add=jnp.asarray(add), keep_prob=jnp.float32(0.9))
  kw = dict(sampling=Sampling(repetition_penalty=1.1), group_ids=groups, stats=StatsSpec(2), edit=edit,
            edit_scope="all")
  a = Generator(unstack_layers(params, 3), cfg, pad_id=0, eos_ids=(2,))(ids, mask, 8, **kw)
  b = Generator(params, cfg, pad_id=0, eos_ids=(2,))(ids, mask, 8, **kw)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  terms = tiny_models.forward_terms(cfg) + a.tokens.size  # the decoder, then sums over the tokens
  for x, y in zip(_stats_tuple(a), _stats_tuple(b)):
    np.testing.assert_allclose(x, y, rtol=0, atol=tiny_models.reorder_atol(y, terms))


@pytest.mark.slow
def test_decode_segments():
  from valuejax.engine.generate import _segments, default_segments
  assert _segments(10, 3) == [(0, 3), (3, 6), (6, 10)]
  assert _segments(2, 4) == [(0, 1), (1, 2)]  # never an empty segment
  assert _segments(0, 3) == []  # one new token without statistics: no decode step
  assert [default_segments(n) for n in (1, 64, 65, 200, 500)] == [1, 1, 2, 4, 4]
  _, cfg, params = tiny_models.valuejax_model("qwen2")
  with pytest.raises(ValueJaxError, match="segments"):
    Generator(params, cfg, segments=0)
  # Without statistics and with rows ending at EOS early: the same tokens in 1 or 4 segments, and from a
  # prompt of one token and one new token (no decode step at all).
  ids, mask = _prompts(seed=3)
  eos = int(Generator(params, cfg, pad_id=0, eos_ids=())(ids, mask, 11).tokens[0, 4])  # row 0 ends early
  one = Generator(params, cfg, pad_id=0, eos_ids=(eos,), segments=1)
  four = Generator(params, cfg, pad_id=0, eos_ids=(eos,), segments=4)
  for new in (1, 2, 11):
    a, b = one(ids, mask, new), four(ids, mask, new)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.lengths, b.lengths)
  assert a.lengths[0] <= 4 and a.finished[0]


def test_split_prefix_layout():
  from valuejax.engine.batching import prepare_batch
  ids, mask = tiny_models.shared_prefix_batch(prefix_len=21, suffix_lengths=(4, 0, 6))
  out_ids, out_mask, _, prefix = prepare_batch(ids, mask, None, (8, 16), 0, prefix_multiple=8)
  # Row 1 is the bare 21-token prefix: every row keeps at least one token of its own, so 20 -> 16 shared.
  assert len(prefix) == 16 and out_ids.shape == (3, 16 + 16)
  for r in range(3):
    original = ids[r][mask[r].astype(bool)]
    np.testing.assert_array_equal(out_ids[r][out_mask[r].astype(bool)], original)
    assert out_mask[r, :16].all() and out_mask[r, -1] == 1  # prefix first, each row ends at the right edge
  # No sharing: a row without tokens, a short common prefix, or a single row.
  empty = mask.copy()
  empty[1] = 0
  assert len(prepare_batch(ids, empty, None, (8, 16), 0, prefix_multiple=8)[3]) == 0
  assert len(prepare_batch(ids, mask, None, (8, 16), 0, prefix_multiple=32)[3]) == 0
  assert len(prepare_batch(ids[:1], mask[:1], None, (8, 16), 0, prefix_multiple=8)[3]) == 0


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
@pytest.mark.slow
def test_shared_prefix_generation_equals_brute_force(arch):
  """A prefix shared by every prompt runs once; tokens and statistics are those of the full computation.
  The engine runs with weight matrices in 3 row blocks, the unshared reference with whole ones."""
  _, cfg, params = tiny_models.valuejax_model(arch)
  ids, mask = tiny_models.shared_prefix_batch()
  groups = np.array([0, 1, 0, 2], np.int32)
  kw = dict(sampling=Sampling(repetition_penalty=1.1), group_ids=groups, stats=StatsSpec(3, hist=True))
  gen = Generator(unstack_layers(params, 3), cfg, pad_id=0, eos_ids=(2,), segments=4)
  assert len(gen.params["layers"][0]["down"]["kernel_t"]) == 3
  out = gen(ids, mask, 9, **kw)
  assert [k[2] for k in gen._compiled] == [16]  # the shared 19 tokens, rounded down to 16
  unshared = Generator(unstack_layers(params, 1), cfg, pad_id=0, eos_ids=(2,), share_prefix=False, segments=1)(
      ids, mask, 9, **kw)
  np.testing.assert_array_equal(out.tokens, unshared.tokens)
  scanned = Generator(params, cfg, pad_id=0, eos_ids=(2,), segments=2)(ids, mask, 9, **kw)  # stacked
  np.testing.assert_array_equal(out.tokens, scanned.tokens)
  np.testing.assert_allclose(np.asarray(out.gen_stats.s1), np.asarray(scanned.gen_stats.s1), rtol=1e-5, atol=1e-4)
  ref = _brute_force(params, cfg, ids, mask, out, groups, 3)
  _check(out.prompt_stats, ref[0])
  _check(out.gen_stats, ref[1])
  for a, b in ((out.prompt_stats.hist, unshared.prompt_stats.hist), (out.gen_stats.hist, unshared.gen_stats.hist)):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(a.sum(-1), b.sum(-1))
    assert np.abs(np.cumsum(a - b, axis=-1)).max() <= 1  # at most a move to an adjacent bin


@pytest.mark.slow
def test_shared_prefix_with_edits_and_devices():
  _, cfg, params = tiny_models.valuejax_model("llama")
  ids, mask = tiny_models.shared_prefix_batch(suffix_lengths=(5, 9, 1, 7, 3, 2, 8, 4, 6, 5))
  groups = np.arange(10, dtype=np.int32) % 3
  scale = np.ones((cfg.num_layers, cfg.intermediate_size), np.float32)
  scale[0, :10] = 0.0
  edit = NeuronEdit.identity(cfg.num_layers, cfg.intermediate_size)._replace(scale=jnp.asarray(scale))
  spec = StatsSpec(3)
  gen = Generator(params, cfg, pad_id=0, eos_ids=(2,))
  plain = Generator(params, cfg, pad_id=0, eos_ids=(2,), share_prefix=False)
  # A deterministic edit of the prompt applies to the shared prefix too.
  a = gen(ids, mask, 6, group_ids=groups, stats=spec, edit=edit, edit_scope="all")
  b = plain(ids, mask, 6, group_ids=groups, stats=spec, edit=edit, edit_scope="all")
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert np.asarray(a.prompt_stats.count)[:, 0, :10].sum() == 0
  for x, y in zip(_stats_tuple(a), _stats_tuple(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-4)  # sums of mixed signs: absolute error
  # A random push on the prompt keeps sharing on: the prefix's pass and the rest's draw the same keep mask
  # per layer (the key and step 0 alone decide it), so the results are the unshared computation's.
  add = np.zeros_like(scale)
  add[:, 20:40] = 1.0
  random_push = edit._replace(add=jnp.asarray(add), keep_prob=jnp.float32(0.5))
  shared = gen(ids, mask, 6, group_ids=groups, stats=spec, edit=random_push, edit_scope="all")
  unshared = plain(ids, mask, 6, group_ids=groups, stats=spec, edit=random_push, edit_scope="all")
  assert sorted(k[2] for k in gen._compiled) == [16]
  np.testing.assert_array_equal(shared.tokens, unshared.tokens)
  for x, y in zip(_stats_tuple(shared), _stats_tuple(unshared)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-4)  # as above
  # Sharded over a 4x2 mesh (params FSDP), the decode loop in 3 segments: the statistics of one device.
  mesh = shd.make_mesh(4, 2)
  multi = Generator(shd.shard_params(params, mesh, "fsdp"), cfg, mesh=mesh, pad_id=0, eos_ids=(2,), segments=3)
  c = multi(ids, mask, 6, group_ids=groups, stats=spec, edit=edit, edit_scope="all")
  np.testing.assert_array_equal(a.tokens, c.tokens)
  for x, y in zip(_stats_tuple(a), _stats_tuple(c)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-4)  # sums of mixed signs: absolute error
