"""One host of a two-process run on CPU (loopback only), used by tests/test_multihost.py.

argv: process_id port out_file. Each process owns 4 CPU devices; the mesh spans all 8.
"""

import os
import sys

# 4 devices of this host; the other XLA flags as the test suite sets them (tests/conftest.py: the same float32
# operations at the compiler's lowest optimization level), so the programs compile as fast as the suite's own.
os.environ["XLA_FLAGS"] = " ".join(["--xla_force_host_platform_device_count=4", *(
    f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count"))])
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_default_matmul_precision", "highest")


def main():
  pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
  from valuejax.engine import sharding as shd
  shd.initialize_distributed(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
  import numpy as np
  from tests import tiny_models
  from valuejax.engine.generate import Generator, StatsSpec
  assert jax.device_count() == 8 and jax.local_device_count() == 4
  _, cfg, params = tiny_models.valuejax_model("llama")
  ids, mask = tiny_models.padded_batch(lengths=(7, 11, 4, 9, 3, 10, 6, 8), total=11, left=(True,) * 8, seed=3)
  groups = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
  mesh = shd.make_mesh()
  gen = Generator(shd.shard_params(params, mesh), cfg, mesh=mesh, pad_id=0, eos_ids=(2,))
  res = gen(ids, mask, 6, group_ids=groups, stats=StatsSpec(3))
  arrays = {"tokens": res.tokens, "count": np.asarray(res.gen_stats.count), "s1": np.asarray(res.gen_stats.s1),
            "pcount": np.asarray(res.prompt_stats.count)}
  # Prompts sharing a 19-token prefix: every host must agree on the prefix it runs once.
  ids, mask = tiny_models.shared_prefix_batch(suffix_lengths=(5, 9, 1, 7, 3, 2, 8, 4))
  res = gen(ids, mask, 6, group_ids=groups, stats=StatsSpec(3))
  arrays.update({"shared_tokens": res.tokens, "shared_count": np.asarray(res.gen_stats.count),
                 "shared_pcount": np.asarray(res.prompt_stats.count), "shared_ps1": np.asarray(res.prompt_stats.s1),
                 "shared_prefix": np.asarray([k[2] for k in gen._compiled])})
  # The model axis across both hosts (mesh 1 x 8, weights FSDP over 8 devices of two processes): both hosts
  # feed the one data shard the same rows, and the statistics, split over neurons across the hosts, are
  # gathered only when the host reads them.
  from valuejax.engine.stats import NeuronStats
  wide = shd.make_mesh(1, 8)
  ids, mask = tiny_models.padded_batch(lengths=(7, 11, 4, 9, 3, 10, 6, 8), total=11, left=(True,) * 8, seed=3)
  gen = Generator(shd.shard_params(params, wide, "fsdp"), cfg, mesh=wide, pad_id=0, eos_ids=(2,))
  res = gen(ids, mask, 6, group_ids=groups, stats=StatsSpec(3, hist=True, hist_bins="compact"))
  assert not res.gen_stats.count.is_fully_addressable
  host = NeuronStats.zeros(("a", "b", "c"), cfg.num_layers, cfg.intermediate_size, hist=True,
                           hist_bins="compact").add(res.gen_stats)
  arrays.update({"wide_tokens": res.tokens, "wide_count": host.count, "wide_s1": host.s1, "wide_hist": host.hist})
  np.savez(out, **arrays)


if __name__ == "__main__":
  main()
