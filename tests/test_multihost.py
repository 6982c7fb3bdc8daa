"""Two processes on one machine (loopback) form one 8-device mesh and give the statistics of one process."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests import tiny_models
from valuejax.engine.generate import Generator, StatsSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_hosts_equal_one(tmp_path):
  port = str(_free_port())
  env = dict(os.environ, PYTHONPATH=ROOT)  # the worker keeps the suite's XLA flags but its own device count
  procs = [subprocess.Popen([sys.executable, "-m", "tests.multihost_worker", str(i), port, str(tmp_path / f"{i}.npz")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in (0, 1)]
  logs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-3000:]

  _, cfg, params = tiny_models.valuejax_model("llama")
  ids, mask = tiny_models.padded_batch(lengths=(7, 11, 4, 9, 3, 10, 6, 8), total=11, left=(True,) * 8, seed=3)
  groups = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
  ref = Generator(params, cfg, pad_id=0, eos_ids=(2,))(ids, mask, 6, group_ids=groups, stats=StatsSpec(3))
  wide = Generator(params, cfg, pad_id=0, eos_ids=(2,))(ids, mask, 6, group_ids=groups,
                                                          stats=StatsSpec(3, hist=True, hist_bins="compact"))
  for i in (0, 1):  # a model axis across the two hosts (mesh 1 x 8): the tokens and statistics of one device
    got = np.load(tmp_path / f"{i}.npz")
    np.testing.assert_array_equal(got["wide_tokens"], wide.tokens)
    np.testing.assert_array_equal(got["wide_count"], np.asarray(wide.gen_stats.count))
    np.testing.assert_allclose(got["wide_s1"], np.asarray(wide.gen_stats.s1), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(got["wide_hist"].sum(-1), np.asarray(wide.gen_stats.hist).sum(-1))
  for i in (0, 1):  # both hosts see the full, replicated result
    got = np.load(tmp_path / f"{i}.npz")
    np.testing.assert_array_equal(got["tokens"], ref.tokens)
    np.testing.assert_array_equal(got["count"], np.asarray(ref.gen_stats.count))
    np.testing.assert_array_equal(got["pcount"], np.asarray(ref.prompt_stats.count))
    np.testing.assert_allclose(got["s1"], np.asarray(ref.gen_stats.s1), rtol=1e-5, atol=1e-5)
  ids, mask = tiny_models.shared_prefix_batch(suffix_lengths=(5, 9, 1, 7, 3, 2, 8, 4))
  gen = Generator(params, cfg, pad_id=0, eos_ids=(2,))
  ref = gen(ids, mask, 6, group_ids=groups, stats=StatsSpec(3))
  assert [k[2] for k in gen._compiled] == [16]  # the prefix ran once here, as on the two hosts
  for i in (0, 1):
    got = np.load(tmp_path / f"{i}.npz")
    assert got["shared_prefix"].tolist() == [0, 16]  # the random batch shares nothing, this one 16 tokens
    np.testing.assert_array_equal(got["shared_tokens"], ref.tokens)
    np.testing.assert_array_equal(got["shared_count"], np.asarray(ref.gen_stats.count))
    np.testing.assert_array_equal(got["shared_pcount"], np.asarray(ref.prompt_stats.count))
    np.testing.assert_allclose(got["shared_ps1"], np.asarray(ref.prompt_stats.s1), rtol=1e-5, atol=1e-4)
