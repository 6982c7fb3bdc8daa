"""Hugging Face model ids resolve through the hub cache (HF_HOME, HF_HUB_OFFLINE, revisions), offline, with a
cache built here in the hub's layout; a missing model is an error naming the model and the cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests import tiny_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LOAD = ("import sys, valuejax\n"
         "m = valuejax.load_model(sys.argv[1])\n"
         "print(m.config.num_layers, m.config.intermediate_size, m.source)\n")


def _hub_cache(tmp_path, model_folder: str, repo: str, revs: dict[str, str]) -> str:
  """HF_HOME with `repo` in the hub cache layout: models--org--name/snapshots/<rev>/, refs/<name> -> rev."""
  home = str(tmp_path / "hf_home")
  base = os.path.join(home, "hub", "models--" + repo.replace("/", "--"))
  for ref, rev in revs.items():
    snap = os.path.join(base, "snapshots", rev)
    if not os.path.isdir(snap):
      shutil.copytree(model_folder, snap)
    os.makedirs(os.path.join(base, "refs"), exist_ok=True)
    with open(os.path.join(base, "refs", ref), "w") as f:
      f.write(rev)
  return home


def _load(spec: str, home: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, HF_HOME=home, HF_HUB_OFFLINE="1")
  env.pop("HF_HUB_CACHE", None)
  return subprocess.run([sys.executable, "-c", _LOAD, spec], cwd=str(home), env=env, capture_output=True, text=True,
                        timeout=300)


@pytest.mark.subprocess
def test_a_model_id_loads_from_the_hub_cache_offline_with_revisions(tmp_path):
  folder = tiny_models.save_word_level_llama(str(tmp_path / "tiny"), tiny_models.tiny_tokenizer(), 96)
  rev = "0123456789abcdef0123456789abcdef01234567"
  home = _hub_cache(tmp_path, folder, "lab/tiny-llama", {"main": rev, "v1": rev})
  out = _load("lab/tiny-llama", home)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split()[2].endswith(os.path.join("snapshots", rev))
  pinned = _load("lab/tiny-llama@v1", home)
  assert pinned.returncode == 0 and pinned.stdout.split()[:2] == out.stdout.split()[:2], pinned.stderr[-3000:]


@pytest.mark.subprocess
def test_a_missing_model_offline_names_the_model_and_the_cache(tmp_path):
  home = str(tmp_path / "empty_home")
  os.makedirs(home)
  out = _load("lab/absent-model", home)
  assert out.returncode != 0
  assert "'lab/absent-model'" in out.stderr and "HF_HUB_OFFLINE=1" in out.stderr
  assert os.path.join(home, "hub") in out.stderr
