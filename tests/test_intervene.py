"""Tests for valuejax.intervene: each builder against hand-computed activations, controls, folding and
batched runs of many edits through one compiled function.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from valuejax.errors import ValueJaxError
from valuejax import intervene as vi
from valuejax.models.edit import NeuronEdit, apply_edit

L, F = 3, 8


def _acts(seed=0, b=2, t=5):
  return jax.random.normal(jax.random.key(seed), (b, t, F), jnp.float32)


@jax.jit
def _apply_all_layers_jit(a, neurons, where):
  return jax.vmap(lambda l: apply_edit(a, l, neurons, where))(jnp.arange(L))


def _apply_all_layers(a, edit: vi.Edit, where=None):
  """apply_edit on the same activations for every layer: [L, B, T, F]."""
  if where is None:
    where = jnp.ones(a.shape[:2], bool)
  return _apply_all_layers_jit(a, edit.neurons, where)


def _mask(pairs, shape=(L, F)):
  m = np.zeros(shape, bool)
  for l, j in pairs:
    m[l, j] = True
  return m


# --- masks and scopes -------------------------------------------------------------------------------------

def test_as_mask_accepts_masks_index_lists_and_neuron_sets():
  m = _mask([(0, 1), (2, 7)])
  np.testing.assert_array_equal(vi.as_mask(m), m)
  np.testing.assert_array_equal(vi.as_mask({0: [1], 2: [7]}, (L, F)), m)
  np.testing.assert_array_equal(vi.as_mask([[1], [], [7]], (L, F)), m)
  np.testing.assert_array_equal(vi.mask_from_indices([0, 2], [1, 7], (L, F)), m)

  from valuejax.locate import GroupNeurons, NeuronSet
  plus = GroupNeurons.create([0, 2], [1, 7], L, F, {"delta": [0.3, 0.2], "p": [0.5, 0.6]})
  ns = NeuronSet({"plus": plus, "minus": GroupNeurons.create([1], [0], L, F)})
  np.testing.assert_array_equal(vi.as_mask(ns, group="plus"), m)
  np.testing.assert_array_equal(vi.as_mask(ns, (L, F), group="plus"), m)
  np.testing.assert_array_equal(vi.as_mask(plus), m)
  with pytest.raises(ValueJaxError, match="group"):
    vi.as_mask(ns, (L, F))
  steer = vi.SteerSet.from_group(ns["plus"])
  np.testing.assert_array_equal(steer.mask, m)
  assert steer.v[2, 7] == np.float32(0.6) and steer.delta[0, 1] == np.float32(0.3)
  with pytest.raises(ValueJaxError, match="out of range"):
    vi.as_mask({0: [F]}, (L, F))
  with pytest.raises(ValueJaxError, match="bool"):
    vi.as_mask(m.astype(np.int32))
  with pytest.raises(ValueJaxError, match="shape"):
    vi.as_mask(m, (L, F + 1))


def test_edit_mask_for_scopes_never_edit_padding():
  attn = jnp.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], bool)
  gen = jnp.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], bool)
  np.testing.assert_array_equal(vi.edit_mask_for("all", attn, gen), attn)
  np.testing.assert_array_equal(vi.edit_mask_for("generated", attn, gen), [[0, 0, 1, 1, 0], [0, 1, 1, 0, 0]])
  np.testing.assert_array_equal(vi.edit_mask_for("prompt", attn, gen), [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
  np.testing.assert_array_equal(vi.edit_mask_for("all", None, None, shape=(2, 3)), np.ones((2, 3), bool))
  with pytest.raises(ValueJaxError, match="generated"):
    vi.edit_mask_for("generated", attn, None)
  with pytest.raises(ValueJaxError, match="scope"):
    vi.edit_mask_for("decode", attn, gen)


# --- builders against hand-computed activations -----------------------------------------------------------

def test_baseline_is_the_identity_bit_for_bit():
  a = _acts()
  edit = vi.baseline((L, F))
  assert edit.is_identity and edit.scope == "all"
  out = _apply_all_layers(a, edit)
  np.testing.assert_array_equal(out, jnp.broadcast_to(a, out.shape))


def test_deactivate_zeroes_the_set_everywhere():
  a = _acts()
  m = _mask([(0, 1), (1, 3), (1, 4)])
  edit = vi.deactivate(m)
  assert edit.scope == "all" and edit.metadata["n_neurons"] == 3
  out = np.asarray(_apply_all_layers(a, edit))
  want = np.broadcast_to(np.asarray(a), out.shape).copy()
  want[0, :, :, 1] = 0
  want[1, :, :, 3:5] = 0
  np.testing.assert_array_equal(out, want)


def _steer_sets():
  plus = vi.SteerSet.from_neurons([0, 1, 2], [1, 2, 3], v=[0.5, 0.8, 0.3], delta=[0.1, 0.2, 0.4], shape=(L, F))
  minus = vi.SteerSet.from_neurons([0, 2], [5, 6], v=[0.6, 0.9], delta=[0.3, 0.12], shape=(L, F))
  return plus, minus


def _sig(x):
  return 1 / (1 + np.exp(-x))


def test_steering_enhance_hand_computed():
  plus, minus = _steer_sets()
  gamma = 1.5
  edit = vi.steering(plus, minus, gamma, keep_prob=1.0)
  assert edit.scope == "generated" and edit.generate_kwargs() == {"edit": edit.neurons, "edit_scope": "generated"}
  assert edit.metadata["n_target"] == 3 and edit.metadata["n_opposite"] == 2
  a = _acts()
  out = np.asarray(_apply_all_layers(a, edit))
  want = np.broadcast_to(np.asarray(a), out.shape).copy()
  for l, j, v, d in [(0, 1, 0.5, 0.1), (1, 2, 0.8, 0.2), (2, 3, 0.3, 0.4)]:
    want[l, :, :, j] += gamma * v * _sig(10 * (d - 0.15))
  for l, j in [(0, 5), (2, 6)]:
    want[l, :, :, j] = np.minimum(want[l, :, :, j], 0)
  np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_steering_reverse_swaps_roles_with_each_aspects_own_strength():
  plus, minus = _steer_sets()
  edit = vi.steering(plus, minus, 2.0, mode="reverse", keep_prob=1.0)
  add, clamp = np.asarray(edit.neurons.add), np.asarray(edit.neurons.clamp_max)
  np.testing.assert_allclose(add[0, 5], 2.0 * 0.6 * _sig(10 * (0.3 - 0.15)), rtol=1e-6)
  np.testing.assert_allclose(add[2, 6], 2.0 * 0.9 * _sig(10 * (0.12 - 0.15)), rtol=1e-6)
  assert (clamp[plus.mask] == 0).all() and np.isinf(clamp[~plus.mask]).all()
  assert (add[plus.mask] == 0).all()
  with pytest.raises(ValueJaxError, match="SteerSet"):
    vi.steering(plus, minus.mask, 1.0, mode="reverse")


def test_steering_overlap_is_clamped_then_pushed():
  """As the authors' hook does (the whole opposite set clamped, then the target set pushed), a neuron in both
  sets ends at min(a, 0) + push: the push survives the clamp."""
  plus = vi.SteerSet.from_neurons([0, 0], [1, 2], [1.0, 1.0], [0.5, 0.5], (L, F))
  minus = vi.SteerSet.from_neurons([0, 0], [2, 3], [1.0, 1.0], [0.5, 0.5], (L, F))
  edit = vi.steering(plus, minus, 1.0, keep_prob=1.0)
  assert edit.metadata["n_overlap"] == 1
  assert edit.metadata["n_target"] == 2 and edit.metadata["n_opposite"] == 2  # the overlap counts in both
  a = _acts()
  out = np.asarray(_apply_all_layers(a, edit)[0])
  push = vi.steer_strength(1.0, 0.5, 1.0)
  # in both sets: clamped, then pushed (one float32 add on each side of the comparison: exact)
  np.testing.assert_array_equal(out[..., 2], np.minimum(np.asarray(a)[..., 2], 0) + push)
  assert (out[..., 1] > np.asarray(a)[..., 1]).all()
  assert (out[..., 3] <= 0).all()


def test_steering_applies_only_at_generated_positions_with_keep_prob():
  plus, minus = _steer_sets()
  edit = vi.steering(plus, minus, 1.0, keep_prob=0.9, seed=3)
  attn = jnp.ones((4, 64), bool)
  gen = jnp.arange(64)[None, :].repeat(4, 0) >= 16
  where = edit.mask_for(attn, gen)
  a = jnp.abs(jax.random.normal(jax.random.key(1), (4, 64, F))) + 0.1  # positive: the clamp always changes
  out = np.asarray(_apply_all_layers(a, edit, where)[0])
  a = np.asarray(a)
  np.testing.assert_array_equal(out[:, :16], a[:, :16])  # prompt untouched
  # No step ids: one keep draw per neuron for the whole call, so the target neuron is pushed at every
  # generated position of every row, or at none; the clamp is never gated and changes every one of them.
  pushed = out[:, 16:, 1] != a[:, 16:, 1]
  assert pushed.all() or not pushed.any()
  assert (out[:, 16:, 5] == 0).all()
  np.testing.assert_array_equal(out[:, 16:, 0], a[:, 16:, 0])  # neuron outside both sets
  # seeded: the same key draws the same neurons
  again = np.asarray(_apply_all_layers(jnp.asarray(a), edit, where)[0])
  np.testing.assert_array_equal(out, again)


def test_layer_split_matches_the_paper_and_scales():
  s = vi.layer_split(32)  # edits read the split as [L] masks
  np.testing.assert_array_equal(np.flatnonzero(s.decision_mask), [0, 1, 2, 3, 4, 27, 28, 29, 30, 31])
  np.testing.assert_array_equal(np.flatnonzero(s.semantic_mask), np.arange(5, 27))
  s30 = vi.layer_split(30)
  assert s30.decision_mask.sum() == 10 and not (s30.decision_mask & s30.semantic_mask).any()
  s16 = vi.layer_split(16)
  np.testing.assert_array_equal(np.flatnonzero(s16.decision_mask), [0, 1, 2, 13, 14, 15])  # 2.5 rounds up
  custom = vi.layer_split(10, first=1, last=2)
  np.testing.assert_array_equal(np.flatnonzero(custom.decision_mask), [0, 8, 9])
  with pytest.raises(ValueJaxError, match="semantic layer"):
    vi.layer_split(4, first=3, last=1)
  from valuejax.locate import layer_split as locate_split  # one function: intervene re-exports locate's
  assert locate_split is vi.layer_split
  ids = locate_split(L, 1, 1)
  m = _mask([(0, 1), (1, 2)])
  np.testing.assert_array_equal(
      vi.value_exploration(m, _mask([]), region="decision", split=ids).neurons.scale,
      vi.value_exploration(m, _mask([]), region="decision", split=vi.layer_split(L, 1, 1)).neurons.scale)
  assert ids.decision.tolist() == [0, 2] and ids.num_layers == L
  np.testing.assert_array_equal(vi.region_layers("combined", ids), [True, True, True])
  with pytest.raises(ValueJaxError, match="for 4 layers"):  # a split of another depth is refused
    vi.value_exploration(m, _mask([]), split=vi.layer_split(4, 1, 1))
  with pytest.raises(ValueJaxError, match="outside"):
    vi.LayerSplit(np.array([0, 3]), np.array([1]), 3)


def test_value_exploration_scales_unique_neurons_and_skips_shared_ones():
  support = _mask([(0, 1), (0, 2), (1, 3), (2, 4)])
  conflict = _mask([(0, 2), (1, 5), (2, 6)])
  split = vi.layer_split(L, first=1, last=1)  # decision: layers 0, 2; semantic: layer 1
  a = _acts()
  for toward, up, down in [("support", 5.0, 0.0), ("conflict", 0.0, 5.0)]:
    edit = vi.value_exploration(support, conflict, toward=toward, region="combined", split=split)
    assert edit.scope == "all" and edit.metadata["n_overlap"] == 1
    out = np.asarray(_apply_all_layers(a, edit))
    want = np.broadcast_to(np.asarray(a), out.shape).copy()
    for l, j in [(0, 1), (1, 3), (2, 4)]:
      want[l, ..., j] *= up
    for l, j in [(1, 5), (2, 6)]:
      want[l, ..., j] *= down
    np.testing.assert_allclose(out, want, rtol=1e-6)
  sem = vi.value_exploration(support, conflict, region="semantic", split=split)
  scale = np.asarray(sem.neurons.scale)
  assert (scale[[0, 2]] == 1).all() and scale[1, 3] == 5 and scale[1, 5] == 0
  dec = vi.value_exploration(support, conflict, region="decision", split=split)
  scale = np.asarray(dec.neurons.scale)
  assert (scale[1] == 1).all() and scale[0, 1] == 5 and scale[0, 2] == 1 and scale[2, 6] == 0


def test_value_exploration_combined_uses_each_settings_sets_in_its_layers():
  split = vi.layer_split(L, first=1, last=1)
  sem = (_mask([(0, 0), (1, 1)]), _mask([(1, 2)]))
  dec = (_mask([(0, 3), (1, 4)]), _mask([(2, 5)]))
  edit = vi.value_exploration_combined(sem, dec, split=split)
  scale = np.asarray(edit.neurons.scale)
  want = np.ones((L, F), np.float32)
  want[1, 1], want[1, 2] = 5, 0  # semantic sets in the semantic layer only
  want[0, 3], want[2, 5] = 5, 0  # decision sets in decision layers only
  np.testing.assert_array_equal(scale, want)


def test_restrict_layers_is_identity_outside():
  edit = vi.restrict_layers(vi.deactivate(np.ones((L, F), bool)), np.array([False, True, False]))
  scale = np.asarray(edit.neurons.scale)
  assert (scale[[0, 2]] == 1).all() and (scale[1] == 0).all()


# --- stacking, controls -----------------------------------------------------------------------------------

def test_stack_and_pad():
  m = _mask([(0, 1)])
  batch = vi.Edit.stack([vi.deactivate(m), vi.baseline((L, F))])
  assert len(batch) == 2 and batch.neurons.scale.shape == (2, L, F) and batch.scope == "all"
  padded = batch.pad_to(4)
  assert len(padded) == 4 and padded[3].is_identity and padded.names[2:] == ("padding", "padding")
  plus, minus = _steer_sets()
  mixed = vi.Edit.stack([vi.steering(plus, minus, 1.0), vi.baseline((L, F))])
  assert mixed.scope == "generated"  # the baseline adopts the batch's scope
  with pytest.raises(ValueJaxError, match="scopes"):
    vi.Edit.stack([vi.steering(plus, minus, 1.0), vi.deactivate(m)])


def test_random_controls_match_per_layer_counts_and_are_reproducible():
  m = _mask([(0, 1), (0, 2), (2, 3), (2, 4), (2, 5)])
  c = vi.random_controls(m, 20, seed=7)
  assert c.shape == (20, L, F)
  np.testing.assert_array_equal(c.sum(2), np.broadcast_to(m.sum(1), (20, L)))
  assert not (c & m).any()  # located neurons excluded by default
  np.testing.assert_array_equal(c, vi.random_controls(m, 20, seed=7))
  np.testing.assert_array_equal(c[:5], vi.random_controls(m, 5, seed=7))  # control i independent of n
  assert not np.array_equal(c, vi.random_controls(m, 20, seed=8))
  assert len({x.tobytes() for x in c}) > 10  # not one set repeated
  with_located = vi.random_controls(m, 200, seed=0, exclude_located=False)
  assert (with_located & m).any()
  with pytest.raises(ValueJaxError, match="draw"):
    vi.random_controls(np.ones((L, F), bool) & (np.arange(F) < 5), 1, 0)

  # The same from a located set, as the launchers pass it: per-layer counts kept, the seed decides all.
  from valuejax.locate import valuelocate
  p_plus = np.zeros((L, F))
  p_plus[0, [1, 2]], p_plus[2, [3, 4, 5]] = 0.5, 0.25
  group = valuelocate(p_plus, np.zeros((L, F)), size=5)["+"]
  np.testing.assert_array_equal(group.counts_per_layer(), [2, 0, 3])
  c = vi.random_controls(group, 20, seed=3)
  np.testing.assert_array_equal(c.sum(2), np.broadcast_to(group.counts_per_layer(), (20, L)))
  assert not (c & group.mask(L, F)).any()
  np.testing.assert_array_equal(c, vi.random_controls(group, 20, seed=3))
  assert not np.array_equal(c, vi.random_controls(group, 20, seed=4))


def test_control_edits_move_the_same_manipulation_onto_random_neurons():
  plus, minus = _steer_sets()
  edit = vi.steering(plus, minus, 1.0)
  controls = vi.control_edits(edit, 4, seed=1)
  located = edit.edited_mask()
  for c in controls:
    cm = c.edited_mask()
    np.testing.assert_array_equal(cm.sum(1), located.sum(1))
    assert not (cm & located).any()
    assert c.scope == edit.scope and float(c.neurons.keep_prob) == float(edit.neurons.keep_prob)
    for l in range(L):  # per layer, the same multiset of per-neuron edits
      np.testing.assert_allclose(np.sort(np.asarray(c.neurons.add)[l][cm[l]]),
                                 np.sort(np.asarray(edit.neurons.add)[l][located[l]]))
      assert (np.asarray(c.neurons.clamp_max)[l] == 0).sum() == (np.asarray(edit.neurons.clamp_max)[l] == 0).sum()


def test_control_edits_are_reproducible_from_the_seed():
  plus, minus = _steer_sets()
  edit = vi.steering(plus, minus, 1.0)
  located = edit.edited_mask()
  first, again, other = (vi.control_edits(edit, 5, seed=s) for s in (11, 11, 12))
  for a, b in zip(first, again):  # the same seed: the same neurons and the same per-neuron edit, exactly
    assert a.name == b.name
    np.testing.assert_array_equal(a.edited_mask(), b.edited_mask())
    for field in ("scale", "add", "clamp_max"):
      np.testing.assert_array_equal(np.asarray(getattr(a.neurons, field)),
                                    np.asarray(getattr(b.neurons, field)))
  # Another seed draws other neurons for every control: each is one of 15 * 7 * 15 possible sets, so a
  # chance repeat is a 1-in-1575 event; with fixed seeds the check is deterministic.
  assert all(not np.array_equal(a.edited_mask(), b.edited_mask()) for a, b in zip(first, other))
  for c in first + other:
    np.testing.assert_array_equal(c.edited_mask().sum(1), located.sum(1))


# --- folding rules ----------------------------------------------------------------------------------------

def test_fold_refuses_nonlinear_edits_and_says_why():
  plus, minus = _steer_sets()
  steer = vi.steering(plus, minus, 1.0)
  reasons = " ".join(vi.fold_reasons(steer))
  assert "clamps" in reasons and "adds" in reasons and "at random" in reasons and "scope" in reasons
  params = {"layers": {"down": {"kernel": np.ones((L, F, 4), np.float32)}}}
  with pytest.raises(ValueJaxError, match="activation path"):
    vi.fold_edit(params, steer)
  assert vi.is_foldable(vi.deactivate(_mask([(0, 1)])))
  # keep_prob gates only the push: an identity edit and a scale-only edit stay deterministic and fold
  ident = vi.Edit(vi.make_neuron_edit((L, F), keep_prob=0.5))
  assert vi.is_foldable(ident)
  scaled = vi.Edit(vi.make_neuron_edit((L, F), scale=np.full((L, F), 2.0), keep_prob=0.5))
  assert vi.is_foldable(scaled)
  pushed = vi.Edit(vi.make_neuron_edit((L, F), add=np.full((L, F), 2.0), keep_prob=0.5))
  assert "at random" in " ".join(vi.fold_reasons(pushed))
  with pytest.raises(ValueJaxError, match="shape"):
    vi.fold_edit({"layers": {"down": {"kernel": np.ones((L, F + 1, 4), np.float32)}}},
                 vi.deactivate(_mask([(0, 1)])))


def test_fold_scales_rows_of_down():
  down = np.arange(L * F * 2, dtype=np.float32).reshape(L, F, 2)
  params = {"embed": np.zeros(3), "layers": {"down": {"kernel": down, "bias": np.ones((L, 2))}}}
  edit = vi.value_exploration(_mask([(1, 2)]), _mask([(2, 3)]), region="combined")
  folded = vi.fold_edit(params, edit)
  want = down.copy()
  want[1, 2] *= 5
  want[2, 3] = 0
  np.testing.assert_array_equal(np.asarray(folded["layers"]["down"]["kernel"]), want)
  assert folded["layers"]["down"]["bias"] is params["layers"]["down"]["bias"]
  np.testing.assert_array_equal(params["layers"]["down"]["kernel"], down)  # input not mutated


# --- one compiled function for any number of edits --------------------------------------------------------

TRACES = []


def _edited_acts(params, cfg, batch, edit: NeuronEdit, edit_mask):
  TRACES.append(1)
  a = batch["input_ids"].astype(jnp.float32)[..., None] * params["w"]
  return jnp.stack([apply_edit(a, jnp.asarray(l), edit, edit_mask) for l in range(cfg)]).sum(-1)


def test_run_edits_traces_once_for_any_count_and_matches_one_by_one():
  params = {"w": jax.random.normal(jax.random.key(0), (F,))}
  batch = {"input_ids": jnp.arange(10).reshape(2, 5), "attention_mask": jnp.ones((2, 5), bool)}
  m = _mask([(0, 1), (1, 2), (2, 3)])
  base = [vi.deactivate(m), vi.value_exploration(m, _mask([(0, 4)])), vi.baseline((L, F))]
  located = vi.deactivate(m)
  edits5 = base + [vi.transplant(located, c) for c in vi.random_controls(m, 2, seed=0)]
  TRACES.clear()
  out3 = vi.run_edits(_edited_acts, params, L, batch, base, chunk=4)
  out5 = vi.run_edits(_edited_acts, params, L, batch, edits5, chunk=4)
  out9 = vi.run_edits(_edited_acts, params, L, batch, edits5 + base + [located], chunk=4)
  assert len(TRACES) == 1, "3, 5 and 9 edits must share one trace"
  assert out3.shape == (3, L, 2, 5) and out5.shape == (5, L, 2, 5) and out9.shape == (9, L, 2, 5)
  np.testing.assert_array_equal(out9[:5], out5)
  # Fewer edits than a chunk run as the next power of two: one edit pads nothing (one trace more).
  out1 = vi.run_edits(_edited_acts, params, L, batch, base[:1], chunk=4)
  assert len(TRACES) == 2 and out1.shape == (1, L, 2, 5)
  np.testing.assert_array_equal(out1, out3[:1])
  one_edit = jax.jit(_edited_acts, static_argnums=1)
  for i, e in enumerate(edits5):
    one = one_edit(params, L, batch, e.neurons, e.mask_for(batch["attention_mask"]))
    np.testing.assert_allclose(out5[i], one, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(out3, out5[:3])


# --- through the forward pass on tiny random models -------------------------------------------------------

@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny(request):
  from tests.tiny_models import padded_batch, valuejax_model
  _, cfg, params = valuejax_model(request.param, seed=0)
  ids, mask = padded_batch(lengths=(9, 6), total=9, vocab=cfg.vocab_size, left=(False, False), seed=1)
  return cfg, params, jnp.asarray(ids), jnp.asarray(mask, bool)


def _fwd():
  from valuejax.models.forward import forward

  @functools.partial(jax.jit, static_argnums=(1, 4))
  def run(params, cfg, ids, mask, capture, edit, edit_mask):
    return forward(params, cfg, ids, mask, capture=capture, edit=edit, edit_mask=edit_mask)
  return run


def _one_layer(edit: vi.Edit, layer: int, num_layers: int) -> vi.Edit:
  return vi.restrict_layers(edit, np.arange(num_layers) == layer)


def test_builders_through_forward_match_hand_computed_activations(tiny):
  cfg, params, ids, mask = tiny
  shape = (cfg.num_layers, cfg.intermediate_size)
  run = _fwd()
  _, a0 = run(params, cfg, ids, mask, "act", None, None)
  a0 = np.asarray(a0)
  rng = np.random.default_rng(0)
  s = rng.random(shape) < 0.1
  c = (rng.random(shape) < 0.1) & ~s
  gen = np.zeros(ids.shape, bool)
  gen[:, 4:] = True
  plus = vi.SteerSet(s, rng.random(shape).astype(np.float32), rng.random(shape).astype(np.float32))
  layer = 1  # layer 0 is untouched, so layer 1's inputs (and its pre-edit activations) equal the clean run's
  cases = [
      (vi.deactivate(s), lambda a: np.where(s[layer], 0.0, a)),
      (vi.value_exploration(s, c, toward="support"),
       lambda a: np.where(s[layer], 5 * a, np.where(c[layer], 0.0, a))),
      (vi.steering(plus, c, 0.7, keep_prob=1.0),
       lambda a: np.where(s[layer], a + vi.steer_strength(plus.v, plus.delta, 0.7)[layer],
                          np.where(c[layer], np.minimum(a, 0), a))),
  ]
  for edit, hand in cases:
    edit = _one_layer(edit, layer, cfg.num_layers)
    where = edit.mask_for(mask, jnp.asarray(gen))
    _, a1 = run(params, cfg, ids, mask, "act", edit.neurons, where)
    a1 = np.asarray(a1)
    np.testing.assert_array_equal(a1[0], a0[0])
    want = np.where(np.asarray(where)[..., None], hand(a0[layer]), a0[layer])
    np.testing.assert_allclose(a1[layer], want, rtol=1e-5, atol=1e-5, err_msg=edit.name)


def test_baseline_edit_changes_nothing_bit_for_bit(tiny):
  cfg, params, ids, mask = tiny
  run = _fwd()
  plain, _ = run(params, cfg, ids, mask, None, None, None)
  base = vi.baseline((cfg.num_layers, cfg.intermediate_size))
  edited, _ = run(params, cfg, ids, mask, None, base.neurons, base.mask_for(mask))
  np.testing.assert_array_equal(np.asarray(plain), np.asarray(edited))


def test_folded_params_match_the_activation_path(tiny):
  cfg, params, ids, mask = tiny
  shape = (cfg.num_layers, cfg.intermediate_size)
  rng = np.random.default_rng(1)
  s, c = rng.random(shape) < 0.15, rng.random(shape) < 0.15
  run = _fwd()
  real = np.asarray(mask)
  from valuejax.models.forward import unstack_layers
  decode = unstack_layers(params, parts=2)  # both layouts fold: down's rows, or its kernel_t's columns
  for edit in (vi.deactivate(s), vi.value_exploration(s, c, toward="conflict"),
               vi.value_exploration(s, c, region="semantic", split=vi.layer_split(cfg.num_layers, 1, 1))):
    via_acts, _ = run(params, cfg, ids, mask, None, edit.neurons, edit.mask_for(mask))
    folded, _ = run(vi.fold_edit(params, edit), cfg, ids, mask, None, None, None)
    # Padding is edited by the folded weights only; causal attention keeps it out of real positions.
    np.testing.assert_allclose(np.asarray(folded)[real], np.asarray(via_acts)[real], rtol=1e-5, atol=1e-5)
    folded_decode, _ = run(vi.fold_edit(decode, edit), cfg, ids, mask, None, None, None)
    np.testing.assert_allclose(np.asarray(folded_decode)[real], np.asarray(via_acts)[real], rtol=1e-5, atol=1e-5)
    plain, _ = run(params, cfg, ids, mask, None, None, None)
    assert np.abs(np.asarray(plain)[real] - np.asarray(folded)[real]).max() > 1e-3  # the edit did something


def _logits_under_edit(params, cfg, batch, edit, edit_mask):
  from valuejax.models.forward import forward
  logits, _ = forward(params, cfg, batch["input_ids"], batch["attention_mask"], edit=edit, edit_mask=edit_mask)
  return logits


def test_run_edits_on_a_model_equals_edits_run_one_by_one(tiny):
  cfg, params, ids, mask = tiny
  shape = (cfg.num_layers, cfg.intermediate_size)
  rng = np.random.default_rng(2)
  s, c = rng.random(shape) < 0.1, rng.random(shape) < 0.1
  located = vi.value_exploration(s, c, toward="support")
  edits = [located, vi.value_exploration(s, c, toward="conflict"), *vi.control_edits(located, 2, seed=0),
           vi.baseline(shape)]
  batch = {"input_ids": ids, "attention_mask": mask}
  out = vi.run_edits(_logits_under_edit, params, cfg, batch, edits, chunk=4)
  run = _fwd()
  for i, e in enumerate(edits):
    one, _ = run(params, cfg, ids, mask, None, e.neurons, e.mask_for(mask))
    np.testing.assert_allclose(np.asarray(out[i]), np.asarray(one), rtol=1e-5, atol=1e-5, err_msg=e.name)


def test_example_prompts_start_with_bos_where_the_model_needs_it():
  """Gemma without a chat template gets <bos> before the example prompts, as in recording; llama does not."""
  import types
  from tests import tiny_models
  from valuejax.data import Prompt
  from valuejax.methods.examples import example_rows
  tok = tiny_models.tiny_tokenizer()
  tok.chat_template = None
  prompts = [Prompt("w5 w6 w7", "g", "q1", chat=True)]
  want = tok("w5 w6 w7", add_special_tokens=False)["input_ids"]
  for arch in ("gemma", "llama"):
    _, cfg, _ = tiny_models.valuejax_model(arch)
    rows = example_rows(types.SimpleNamespace(tokenizer=tok, config=cfg), prompts)
    assert rows == [([cfg.bos_token_id] if arch == "gemma" else []) + want]
