"""Test set-up: 8 virtual CPU devices (multi-device code runs on CPU), float32 matmuls at full precision, and
the launchers' compilation cache in a folder of this test session's own (shared by the launcher processes the
tests start, so each program compiles once per session, and nothing is read from or left in the user's cache).
"""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VALUEJAX_COMPILATION_CACHE", tempfile.mkdtemp(prefix="valuejax-xla-"))

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_configure(config):
  config.addinivalue_line("markers", "real_model: loads a real pretrained model (slower)")
