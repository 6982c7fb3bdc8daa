"""valuejax.engine.batching: special ids, the one bucketing rule, and row packing; and that the engine's batch
layout built from them is the one the hand-written loops made before (same shapes, same pad ids)."""

from types import SimpleNamespace

import numpy as np
import pytest

from valuejax.engine import SpecialIds, bucket, pack_rows, special_ids
from valuejax.errors import ValueJaxError


def _cfg(model_type="llama", pad=None, eos=(2,), bos=1):
  return SimpleNamespace(model_type=model_type, pad_token_id=pad, eos_token_ids=tuple(eos), bos_token_id=bos)


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
  from valuejax.engine.generate import BATCH_BUCKETS, PROMPT_BUCKETS
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


# -- the engine's layout is the one the old loops built ---------------------------------------------------

def _old_prepare(input_ids, attention_mask, buckets, pad_id, prefix_multiple, batch_buckets):
  """The hand-written engine layout before valuejax.engine.batching (left_pad, _split_prefix, empty rows)."""
  def old_bucket(n, bs):
    for b in bs:
      if n <= b:
        return b
    return int(-(-n // bs[-1]) * bs[-1])

  input_ids, attention_mask = np.asarray(input_ids), np.asarray(attention_mask)
  n = input_ids.shape[0]
  longest = int(attention_mask.sum(1).max()) if n else 0
  length = old_bucket(max(longest, 1), buckets)
  ids = np.full((n, length), pad_id, np.int32)
  mask = np.zeros((n, length), np.int32)
  for i in range(n):
    row = input_ids[i][attention_mask[i].astype(bool)]
    if len(row):
      ids[i, length - len(row):], mask[i, length - len(row):] = row, 1
  prefix = np.zeros(0, np.int32)
  rows = [r[m.astype(bool)] for r, m in zip(ids, mask)]
  real = [r for r in rows if len(r)]
  if prefix_multiple and len(real) >= 2 and len(real) == len(rows):
    shortest = min(map(len, real))
    first = real[0][:shortest - 1]
    same = np.ones(len(first), bool)
    for r in real[1:]:
      same &= r[:len(first)] == first
    shared = int(np.argmin(same)) if not same.all() else len(first)
    p = shared // prefix_multiple * prefix_multiple
    if p:
      length = old_bucket(max(len(r) for r in real) - p, buckets)
      ids = np.full((n, p + length), pad_id, np.int32)
      mask = np.zeros((n, p + length), np.int32)
      ids[:, :p], mask[:, :p] = first[:p], 1
      for i, r in enumerate(rows):
        ids[i, p + length - (len(r) - p):], mask[i, p + length - (len(r) - p):] = r[p:], 1
      prefix = np.asarray(first[:p], np.int32)
  b = old_bucket(n, batch_buckets) if batch_buckets and n else n
  if b != n:
    ids = np.concatenate([ids, np.full((b - n, ids.shape[1]), pad_id, np.int32)])
    mask = np.concatenate([mask, np.zeros((b - n, ids.shape[1]), np.int32)])
  return ids, mask, prefix


@pytest.mark.parametrize("multiple", [0, 8])
@pytest.mark.parametrize("batch_buckets", [None, (1, 2, 4, 8)])
def test_engine_layout_is_unchanged(multiple, batch_buckets):
  from valuejax.engine.generate import _prepare_batch
  rng = np.random.default_rng(0)
  shared = rng.integers(3, 90, 21)
  cases = []
  for lengths in [(4, 9, 1), (0, 5), (12,), (30, 2, 7)]:  # right-padded rows of random tokens
    rows = [rng.integers(3, 90, k) for k in lengths]
    cases.append(rows)
    cases.append([np.concatenate([shared, r]) for r in rows])  # a 21-token shared prefix
  cases.append([shared[:17], shared[:17]])  # identical rows
  for rows in cases:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width + 2), 77, np.int32)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
      ids[i, :len(r)], mask[i, :len(r)] = r, 1
    new_ids, new_mask, groups, new_prefix = _prepare_batch(ids, mask, None, (8, 16, 32), 0, None, None,
                                                           prefix_multiple=multiple, batch_buckets=batch_buckets)
    old_ids, old_mask, old_prefix = _old_prepare(ids, mask, (8, 16, 32), 0, multiple, batch_buckets)
    np.testing.assert_array_equal(new_ids, old_ids)
    np.testing.assert_array_equal(new_mask.astype(np.int32), old_mask)
    np.testing.assert_array_equal(new_prefix, old_prefix)
    assert new_ids.dtype == np.int32 and new_prefix.dtype == np.int32 and new_mask.dtype == bool
    assert groups.tolist() == [0] * len(rows) + [-1] * (len(new_ids) - len(rows))
