"""valuejax.engine.batching: special ids, the one bucketing rule, row packing, and the engine's batch layout
(a shared prefix first, the rest left-padded to its bucket, empty rows up to the batch bucket)."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from valuejax.engine import SpecialIds, bucket, pack_rows, special_ids
from valuejax.errors import ValueJaxError


def _cfg(model_type="llama", pad=None, eos=(2,), bos=1):
  """The ModelConfig that config.json of a tiny `model_type` gives, with these special ids."""
  from tests.tiny_models import hf_config
  from valuejax.models.config import ModelConfig
  cfg = ModelConfig.from_hf(hf_config(model_type))
  return dataclasses.replace(cfg, pad_token_id=pad, eos_token_ids=tuple(eos), bos_token_id=bos)


def _tok(pad=None, eos=None):
  return SimpleNamespace(pad_token_id=pad, eos_token_id=eos)


# -- special ids ------------------------------------------------------------------------------------------

def test_special_ids_pad_prefers_the_tokenizer_then_the_config_then_zero():
  assert special_ids(_tok(pad=7), _cfg(pad=3)).pad == 7
  assert special_ids(_tok(pad=0), _cfg(pad=3)).pad == 0  # a tokenizer pad of 0 is a pad, not "none"
  assert special_ids(_tok(), _cfg(pad=3)).pad == 3
  assert special_ids(_tok(), _cfg()).pad == 0
  assert special_ids(None, _cfg(pad=5)).pad == 5  # config only


def test_special_ids_eos_is_the_sorted_union():
  assert special_ids(_tok(eos=9), _cfg(eos=(106, 2))).eos == (2, 9, 106)
  assert special_ids(_tok(eos=2), _cfg(eos=(2,))).eos == (2,)
  assert special_ids(_tok(), _cfg(eos=())).eos == ()
  assert special_ids(_tok(eos=4), _cfg(eos=())).eos == (4,)
  ids = special_ids(_tok(pad=1, eos=2), _cfg())
  assert isinstance(ids, SpecialIds) and isinstance(ids.eos, tuple) and type(ids.pad) is int


def test_special_ids_bos_only_for_gemma():
  from valuejax.engine.record import prompt_bos
  for model_type in ("gemma", "gemma2", "gemma3_text"):
    cfg = _cfg(model_type=model_type, bos=2)
    assert special_ids(_tok(), cfg).bos == 2 == prompt_bos(cfg)
  for model_type in ("llama", "qwen2", "gpt2"):
    cfg = _cfg(model_type=model_type)
    assert special_ids(_tok(), cfg).bos is None is prompt_bos(cfg)


def test_special_ids_with_a_real_tokenizer():
  from tests.tiny_models import tiny_tokenizer
  tok = tiny_tokenizer()
  ids = special_ids(tok, _cfg(pad=None, eos=(5,)))
  assert ids.pad == (tok.pad_token_id if tok.pad_token_id is not None else 0)
  assert set(ids.eos) == {5} | ({tok.eos_token_id} if tok.eos_token_id is not None else set())


# -- bucket -----------------------------------------------------------------------------------------------

def test_bucket_default_is_powers_of_two_from_16():
  assert [bucket(n) for n in (0, 1, 15, 16, 17, 32, 33, 100, 1000)] == [16, 16, 16, 16, 32, 32, 64, 128, 1024]
  assert bucket(5, ()) == 16  # empty buckets: the default
  assert bucket(3000, beyond="error") == 4096  # no largest bucket to pass


def test_bucket_explicit_smallest_at_least_n():
  assert bucket(0, (8, 16)) == 8 and bucket(1, (8, 16)) == 8
  assert bucket(8, (8, 16)) == 8 and bucket(9, (8, 16)) == 16
  assert bucket(9, (16, 8)) == 16 and bucket(5, (16, 8)) == 8  # order does not matter
  for beyond in ("multiple", "error"):
    assert bucket(40, (32, 64), beyond=beyond) == 64


def test_bucket_beyond_the_largest():
  assert bucket(17, (8, 16)) == 32 and bucket(33, (8, 16)) == 48 and bucket(48, (8, 16)) == 48
  assert bucket(513, (1, 2, 512)) == 1024
  with pytest.raises(ValueJaxError, match="largest bucket 16"):
    bucket(17, (8, 16), beyond="error")
  with pytest.raises(ValueJaxError, match="beyond"):
    bucket(3, (8,), beyond="clip")


def test_bucket_matches_both_old_policies():
  from valuejax.engine.batching import BATCH_BUCKETS, PROMPT_BUCKETS
  from valuejax.evaluate.scoring import bucket_length

  def old_generate(n, buckets):
    for b in buckets:
      if n <= b:
        return b
    return int(-(-n // buckets[-1]) * buckets[-1])

  def old_scoring(n, buckets=None):
    if buckets:
      for b in sorted(buckets):
        if b >= n:
          return int(b)
      raise ValueError
    return max(16, 1 << (max(n, 1) - 1).bit_length())

  for n in range(0, 10000, 7):
    assert bucket(n, PROMPT_BUCKETS) == old_generate(n, PROMPT_BUCKETS)
    assert bucket(n, BATCH_BUCKETS) == old_generate(n, BATCH_BUCKETS)
    assert bucket(n) == old_scoring(n) == bucket_length(n)
    if n <= 64:
      assert bucket(n, (64, 32), beyond="error") == old_scoring(n, (64, 32)) == bucket_length(n, (64, 32))


# -- pack_rows --------------------------------------------------------------------------------------------

def test_pack_rows_right_and_left():
  rows = [[5, 6, 7], [8], []]
  ids, mask = pack_rows(rows, pad_id=0)
  assert ids.dtype == np.int32 and mask.dtype == bool and ids.shape == mask.shape == (3, 3)
  np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
  ids, mask = pack_rows(rows, pad_id=9, length=4, side="left")
  np.testing.assert_array_equal(ids, [[9, 5, 6, 7], [9, 9, 9, 8], [9, 9, 9, 9]])
  np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
  ids, mask = pack_rows([np.array([3, 4]), (1,)], pad_id=0, length=2)  # arrays and tuples are rows too
  np.testing.assert_array_equal(ids, [[3, 4], [1, 0]])


def test_pack_rows_extra_rows_pad_or_first():
  rows = [[5, 6], [7]]
  ids, mask = pack_rows(rows, pad_id=1, length=3, batch=4)
  np.testing.assert_array_equal(ids, [[5, 6, 1], [7, 1, 1], [1, 1, 1], [1, 1, 1]])
  assert not mask[2:].any()
  ids, mask = pack_rows(rows, pad_id=1, length=3, batch=4, fill="first", side="left")
  np.testing.assert_array_equal(ids, [[1, 5, 6], [1, 1, 7], [1, 5, 6], [1, 5, 6]])
  np.testing.assert_array_equal(mask[2:], [[0, 1, 1], [0, 1, 1]])
  ids, mask = pack_rows([], pad_id=0, length=5)
  assert ids.shape == mask.shape == (0, 5)
  ids, mask = pack_rows([], pad_id=0, length=2, batch=2)
  assert ids.shape == (2, 2) and not mask.any()
  ids, mask = pack_rows([[], []], pad_id=0)  # only empty rows: length 0
  assert ids.shape == (2, 0)


def test_pack_rows_errors():
  with pytest.raises(ValueJaxError, match="row 1 has 3 tokens, more than the length 2"):
    pack_rows([[1], [1, 2, 3]], pad_id=0, length=2)
  with pytest.raises(ValueJaxError, match="do not fit a batch of 1"):
    pack_rows([[1], [2]], pad_id=0, batch=1)
  with pytest.raises(ValueJaxError, match="no rows"):
    pack_rows([], pad_id=0, length=2, batch=2, fill="first")
  with pytest.raises(ValueJaxError, match="side"):
    pack_rows([[1]], pad_id=0, side="middle")
  with pytest.raises(ValueJaxError, match="fill"):
    pack_rows([[1]], pad_id=0, fill="last")


# -- the engine's layout ---------------------------------------------------------------------------------

def _right_padded(rows, width_extra=2, pad=77):
  width = max(len(r) for r in rows)
  ids = np.full((len(rows), width + width_extra), pad, np.int32)
  mask = np.zeros_like(ids)
  for i, r in enumerate(rows):
    ids[i, :len(r)], mask[i, :len(r)] = r, 1
  return ids, mask


def test_shared_prefix_rounds_down_and_leaves_each_row_a_token():
  from valuejax.engine.batching import shared_prefix
  rng = np.random.default_rng(1)
  head = rng.integers(3, 90, 21)
  rows = [np.concatenate([head, rng.integers(3, 90, k)]) for k in (4, 0, 6)]
  # Row 1 is the bare 21-token prefix: every row keeps at least one token of its own, so 20 -> 16 shared.
  assert shared_prefix(rows, 8) == 16 and shared_prefix(rows, 1) == 20
  assert shared_prefix(rows, 32) == 0  # less than one multiple
  assert shared_prefix(rows[:1], 8) == 0  # one row
  assert shared_prefix(rows + [np.zeros(0, np.int32)], 8) == 0  # a row without tokens
  other = rows[2].copy()
  other[5] = 2  # the rows part at token 5
  assert shared_prefix([rows[0], other], 1) == 5 and shared_prefix([rows[0], other], 8) == 0


@pytest.mark.parametrize("multiple", [0, 8])
@pytest.mark.parametrize("batch_buckets", [None, (1, 2, 4, 8)])
def test_engine_layout(multiple, batch_buckets):
  """Whatever the padding of the input, each row's real tokens come back in order: a shared prefix (when
  sharing, rounded down to the multiple, each row keeping a token) in slots [0, P), the rest of each row
  ending at the right edge of a length bucket, then empty rows (all pad, group -1) up to the batch bucket."""
  from valuejax.engine.batching import prepare_batch
  rng = np.random.default_rng(0)
  shared = rng.integers(3, 90, 21)
  cases = []
  for lengths in [(4, 9, 1), (0, 5), (12,), (30, 2, 7)]:  # right-padded rows of random tokens
    rows = [rng.integers(3, 90, k) for k in lengths]
    cases.append((rows, 0))
    cases.append(([np.concatenate([shared, r]) for r in rows], 16))  # 21 shared: 16 with a multiple of 8
  cases.append(([shared[:17], shared[:17]], 16))  # identical rows: the last token stays each row's own
  for rows, want_prefix in cases:
    ids, mask = _right_padded(rows)
    new_ids, new_mask, groups, prefix = prepare_batch(ids, mask, None, (8, 16, 32), 0, prefix_multiple=multiple,
                                                      batch_buckets=batch_buckets)
    n = len(rows)
    p = want_prefix if multiple and len(rows) > 1 and want_prefix >= multiple else 0
    longest = max(len(r) for r in rows)
    length = bucket(max(longest - p, 1), (8, 16, 32))
    batch = bucket(n, batch_buckets) if batch_buckets else n
    assert new_ids.shape == new_mask.shape == (batch, p + length)
    assert new_ids.dtype == np.int32 and prefix.dtype == np.int32 and new_mask.dtype == bool
    np.testing.assert_array_equal(prefix, rows[0][:p])
    for i, r in enumerate(rows):
      np.testing.assert_array_equal(new_ids[i][new_mask[i]], r)  # the row's tokens, in order
      if len(r):
        assert new_mask[i, :p].all() and new_mask[i, -1]  # prefix first, the rest ends at the right edge
        assert new_mask[i, p:].sum() == len(r) - p and new_mask[i, p + length - (len(r) - p):].all()
    assert (new_ids[~new_mask] == 0).all()  # pad id everywhere else
    assert not new_mask[n:].any()
    assert groups.tolist() == [0] * n + [-1] * (batch - n)


def test_prepare_batch_groups_and_data_axis():
  from valuejax.engine.batching import prepare_batch
  ids, mask = _right_padded([[5, 6, 7], [8]])
  out, out_mask, groups, _ = prepare_batch(ids, mask, [1, 0], (4,), 0, data=4, num_groups=2)
  assert out.shape == (4, 4) and groups.tolist() == [1, 0, -1, -1]  # rounded up to the data axis
  np.testing.assert_array_equal(out[:2], [[0, 5, 6, 7], [0, 0, 0, 8]])
  with pytest.raises(ValueJaxError, match=r"group ids must lie in \[0, 2\)"):
    prepare_batch(ids, mask, [2, 0], (4,), 0, num_groups=2)
  with pytest.raises(ValueJaxError, match="one group per row"):
    prepare_batch(ids, mask, [0], (4,), 0)
  with pytest.raises(ValueJaxError, match="positive"):
    from valuejax.engine.batching import batch_buckets
    batch_buckets((0, 4))
