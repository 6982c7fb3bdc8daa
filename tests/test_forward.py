"""Parity of the JAX forward pass with Hugging Face transformers (PyTorch) for every architecture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests import tiny_models
from valuejax.models.edit import NeuronEdit
from valuejax.models.forward import KVCache, forward, forward_cached, positions_from_mask

TOL = 1e-4


def _hf_run(model, ids, mask, arch):
  """Logits and the two hook points read with forward hooks on the HF modules."""
  acts, hidden = [], []
  hooks = []
  layers = model.transformer.h if arch == "gpt2" else model.model.layers
  for layer in layers:
    act_mod = layer.mlp.act if arch == "gpt2" else layer.mlp.act_fn
    down = layer.mlp.c_proj if arch == "gpt2" else layer.mlp.down_proj
    hooks.append(act_mod.register_forward_hook(lambda m, i, o: acts.append(o.detach().numpy())))
    hooks.append(down.register_forward_pre_hook(lambda m, i: hidden.append(i[0].detach().numpy())))
  pos = np.asarray(positions_from_mask(jnp.asarray(mask)))
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                position_ids=torch.tensor(pos, dtype=torch.long))
  for h in hooks:
    h.remove()
  return out.logits.float().numpy(), np.stack(acts), np.stack(hidden)


@pytest.mark.parametrize("arch", tiny_models.ARCHS)
def test_logits_and_activations_match_hf(arch, tmp_path):
  """Saved with save_pretrained (safetensors) and read back through load_model, as a user would."""
  from valuejax.models.loading import load_model
  model = tiny_models.hf_model(arch)
  model.save_pretrained(tmp_path)
  loaded = load_model(str(tmp_path))
  cfg, params = loaded.config, loaded.params
  ids, mask = tiny_models.padded_batch()
  ref_logits, ref_act, ref_hidden = _hf_run(model, ids, mask, arch)
  logits, act = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act")
  _, hidden = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="hidden")
  real = mask.astype(bool)
  assert np.abs(np.asarray(logits)[real] - ref_logits[real]).max() < TOL
  assert act.shape == (cfg.num_layers, *ids.shape, cfg.intermediate_size)
  assert np.abs(np.asarray(act)[:, real] - ref_act[:, real]).max() < TOL
  assert np.abs(np.asarray(hidden)[:, real] - ref_hidden[:, real]).max() < TOL


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_padding_side_does_not_change_real_tokens(arch):
  _, cfg, params = tiny_models.valuejax_model(arch)
  ids, mask = tiny_models.padded_batch(lengths=(9, 6), total=12, left=(True, False))
  logits, act = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act")
  for row in range(ids.shape[0]):
    keep = mask[row].astype(bool)
    single_logits, single_act = forward(params, cfg, jnp.asarray(ids[row, keep][None]), capture="act")
    np.testing.assert_allclose(np.asarray(logits)[row, keep], np.asarray(single_logits)[0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(act)[:, row, keep], np.asarray(single_act)[:, 0], atol=1e-5)


def test_logits_last_and_none():
  _, cfg, params = tiny_models.valuejax_model("qwen2")
  ids, mask = tiny_models.padded_batch(left=(True, False, False))
  full, _ = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask))
  last, _ = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), logits="last")
  idx = np.array([np.nonzero(m)[0].max() for m in mask])
  np.testing.assert_allclose(np.asarray(last), np.asarray(full)[np.arange(len(idx)), idx], atol=1e-6)
  none, acts = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), logits="none")
  assert none is None and acts is None


@pytest.mark.parametrize("arch", ["mistral", "gemma2", "gemma3_text", "gpt2"])
@pytest.mark.slow
def test_cached_decoding_matches_full_forward(arch):
  """Prefill then one token at a time through the KV cache gives the full forward's logits."""
  _, cfg, params = tiny_models.valuejax_model(arch)
  ids, mask = tiny_models.padded_batch(lengths=(6, 3), total=6, left=(True, True))
  extra = np.array([[5, 9, 17, 4], [33, 8, 2, 40]], np.int32)
  full_ids = np.concatenate([ids, extra], 1)
  full_mask = np.concatenate([mask, np.ones_like(extra)], 1)
  ref, ref_act = forward(params, cfg, jnp.asarray(full_ids), jnp.asarray(full_mask), capture="act")

  slots = full_ids.shape[1] + 2
  cache = KVCache.zeros(cfg, 2, slots)
  valid = np.zeros((2, slots), bool)
  valid[:, :6] = mask
  pos = positions_from_mask(jnp.asarray(mask))
  logits, act, cache = forward_cached(params, cfg, jnp.asarray(ids), pos, cache, jnp.int32(0), jnp.asarray(valid),
                                      capture="act", logits="all")
  np.testing.assert_allclose(np.asarray(logits)[mask.astype(bool)], np.asarray(ref)[:, :6][mask.astype(bool)],
                             atol=1e-5)
  next_pos = np.asarray(pos)[:, -1]
  for step in range(extra.shape[1]):
    slot = 6 + step
    valid[:, slot] = True
    next_pos = next_pos + 1
    logits, act, cache = forward_cached(params, cfg, jnp.asarray(extra[:, step:step + 1]),
                                        jnp.asarray(next_pos[:, None]), cache, jnp.int32(slot),
                                        jnp.asarray(valid), capture="act")
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref)[:, slot], atol=1e-5)
    np.testing.assert_allclose(np.asarray(act)[:, :, 0], np.asarray(ref_act)[:, :, slot], atol=1e-5)


def test_identity_edit_changes_nothing_and_scale_zero_matches_hook():
  model, cfg, params = tiny_models.valuejax_model("llama")
  ids, mask = tiny_models.padded_batch()
  base, base_act = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act")
  ident = NeuronEdit.identity(cfg.num_layers, cfg.intermediate_size)
  same, same_act = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act", edit=ident)
  np.testing.assert_array_equal(np.asarray(base), np.asarray(same))
  np.testing.assert_array_equal(np.asarray(base_act), np.asarray(same_act))

  # Zero neurons 3 and 7 of layer 1 with a torch hook on the reference, and with an edit here.
  def zero_hook(module, inputs, output):
    output = output.clone()
    output[..., [3, 7]] = 0
    return output
  handle = model.model.layers[1].mlp.act_fn.register_forward_hook(zero_hook)
  ref_logits, _, _ = _hf_run(model, ids, mask, "llama")
  handle.remove()
  scale = np.ones((cfg.num_layers, cfg.intermediate_size), np.float32)
  scale[1, [3, 7]] = 0
  edited, acts = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act",
                         edit=ident._replace(scale=jnp.asarray(scale)))
  real = mask.astype(bool)
  assert np.abs(np.asarray(edited)[real] - ref_logits[real]).max() < TOL
  assert np.all(np.asarray(acts)[1][real][:, [3, 7]] == 0)  # padding is never edited
  assert np.abs(np.asarray(edited) - np.asarray(base))[real].max() > 1e-3


def test_capture_function_reduces_inside_the_scan():
  _, cfg, params = tiny_models.valuejax_model("gemma")
  ids, mask = tiny_models.padded_batch()
  _, act = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act", logits="none")
  w = jnp.asarray(mask, jnp.float32)
  fn = lambda layer, a, h: jnp.einsum("bt,btf->f", w, (a > 0).astype(jnp.float32))
  _, counts = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture=fn, logits="none")
  expect = (np.asarray(act) > 0)[:, mask.astype(bool)].sum(1)
  np.testing.assert_array_equal(np.asarray(counts), expect)


def test_forward_is_jittable_and_bfloat16_runs():
  _, cfg, params = tiny_models.valuejax_model("llama")
  ids, mask = tiny_models.padded_batch()
  f = jax.jit(forward, static_argnames=("cfg", "capture", "logits"))
  ref, _ = f(params, cfg, jnp.asarray(ids), jnp.asarray(mask))
  p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  out, act = f(p16, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act")
  assert act.dtype == jnp.bfloat16 and out.dtype == jnp.float32
  real = mask.astype(bool)
  rel = np.abs(np.asarray(out)[real] - np.asarray(ref)[real]).max() / np.abs(np.asarray(ref)).max()
  assert rel < 0.1


@pytest.mark.parametrize("parts", [1, 3])
@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2", "qwen2"])
def test_unstacked_layers_give_the_same_forward(arch, parts):
  """Unrolled layers with fused q/k/v (biases of gpt2 and qwen2 included) and gate/up (gated MLPs; gpt2's
  one projection stays as it is), in row blocks."""
  from valuejax.models.forward import stack_layers, unstack_layers
  _, cfg, params = tiny_models.valuejax_model(arch)
  ids, mask = tiny_models.padded_batch()
  ref, ref_act = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act")
  unstacked = unstack_layers(params, parts=parts)
  layer = unstacked["layers"][0]
  assert "qkv" in layer and not {"q", "k", "v"} & set(layer)
  assert ("bias" in layer["qkv"]) == (arch in ("gpt2", "qwen2"))
  mlp = "gate_up" if cfg.gated_mlp else "gate"
  assert mlp in layer and ("up" in layer) is False
  blocks = layer[mlp]["kernel_t"]
  if parts == 1:
    assert not isinstance(blocks, tuple) and "unembed_t" not in unstacked
  else:  # row blocks of uneven size, the unembedding's too: a tied embedding is itself cut, never copied
    assert len(blocks) == 3
    assert sum(b.shape[0] for b in blocks) == cfg.intermediate_size * (2 if cfg.gated_mlp else 1)
    assert "lm_head" not in unstacked
    assert len(unstacked["embed" if cfg.tie_embeddings else "unembed_t"]) == 3
    assert ("unembed_t" in unstacked) != cfg.tie_embeddings
  out, act = forward(unstacked, cfg, jnp.asarray(ids), jnp.asarray(mask), capture="act")
  # The same arithmetic in other summation orders (fused and blocked matmuls): float32 rounding only.
  terms = tiny_models.forward_terms(cfg)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=tiny_models.reorder_atol(ref, terms))
  np.testing.assert_allclose(np.asarray(act), np.asarray(ref_act), rtol=0,
                             atol=tiny_models.reorder_atol(ref_act, terms))
  # And back: the stacked layout bit for bit (slices, transposes and concatenations only).
  back = stack_layers(unstacked, cfg)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_relayout_with_donation_holds_one_copy():
  """Converting in place deletes each stacked array once copied out: the live bytes stay about one copy."""
  from valuejax.models.forward import layout_of, relayout
  _, cfg, params = tiny_models.valuejax_model("llama")
  params = jax.tree.map(jnp.array, params)  # arrays of this test's own
  size = sum(x.nbytes for x in jax.tree.leaves(params))
  decode = relayout(params, cfg, "decode", parts=2, donate=True)
  kept = {id(x) for x in jax.tree.leaves(decode)}
  assert layout_of(decode) == "decode"
  assert all(x.is_deleted() or id(x) in kept for x in jax.tree.leaves(params))  # norms are shared, not copied
  assert sum(x.nbytes for x in jax.tree.leaves(decode)) == size
  stacked = relayout(decode, cfg, "stacked", donate=True)
  kept = {id(x) for x in jax.tree.leaves(stacked)}
  assert layout_of(stacked) == "stacked"
  assert all(x.is_deleted() or id(x) in kept for x in jax.tree.leaves(decode))
  assert sum(x.nbytes for x in jax.tree.leaves(stacked)) == size
  ids, mask = tiny_models.padded_batch()
  _, _, ref = tiny_models.valuejax_model("llama")
  np.testing.assert_array_equal(np.asarray(forward(stacked, cfg, jnp.asarray(ids), jnp.asarray(mask))[0]),
                                np.asarray(forward(ref, cfg, jnp.asarray(ids), jnp.asarray(mask))[0]))


def test_default_parts_follow_the_usable_cores(monkeypatch):
  """One block per core this process may use (at most 4) on the CPU backend."""
  import os
  from valuejax.models import forward as fwd
  if not hasattr(os, "sched_getaffinity"):
    pytest.skip("no sched_getaffinity on this platform")
  for cores, parts in ((set(range(16)), 4), ({0, 1}, 2), ({3}, 1)):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid, c=cores: c)
    assert fwd.default_parts() == parts
