"""The LAPE / ValueExploration mask layout (a torch.save'd list over groups of per-layer index tensors): read
without torch, written so that torch.load (weights_only too) reads it back; torch is a test-only dependency."""

from __future__ import annotations

import numpy as np
import pytest

from valuejax.errors import ValueJaxError
from valuejax.locate import NeuronSet

torch = pytest.importorskip("torch")


def _authors_masks():
  return [[torch.tensor([1, 5, 7]), torch.tensor([], dtype=torch.long), torch.tensor([0])],
          [torch.tensor([2]), torch.tensor([3, 4]), torch.tensor([9])]]


def test_masks_saved_by_torch_read_as_a_neuron_set(tmp_path):
  path = str(tmp_path / "activation_mask")
  torch.save(_authors_masks(), path)
  ns = NeuronSet.from_lape_masks(path, ["zh", "en"], num_neurons=10, model="tiny")
  assert ns.names == ("zh", "en") and (ns.num_layers, ns.num_neurons) == (3, 10)
  assert [x.tolist() for x in ns.indices("zh")] == [[1, 5, 7], [], [0]]
  assert [x.tolist() for x in ns.indices("en")] == [[2], [3, 4], [9]]
  assert ns.provenance["method"] == "lape_masks" and ns.provenance["model"] == "tiny"


def test_our_masks_load_in_torch_and_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  mask = rng.random((2, 4, 50)) < 0.1
  from valuejax.locate.neuron_set import GroupNeurons
  ns = NeuronSet({"a": GroupNeurons.from_mask(mask[0]), "b": GroupNeurons.from_mask(mask[1])})
  path = str(tmp_path / "ours.pt")
  ns.to_lape_masks(path)
  for loaded in (torch.load(path), torch.load(path, weights_only=True)):
    assert len(loaded) == 2 and all(len(g) == 4 for g in loaded)
    for g, name in zip(loaded, ("a", "b")):
      assert all(t.dtype == torch.int64 for t in g)
      assert [t.tolist() for t in g] == [x.tolist() for x in ns.indices(name)]
  back = NeuronSet.from_lape_masks(path, ["a", "b"], num_neurons=50)
  assert all(np.array_equal(back.mask(g), ns.mask(g)) for g in ("a", "b"))


def test_mask_files_that_do_not_fit_are_named(tmp_path):
  path = str(tmp_path / "m.pt")
  torch.save(_authors_masks(), path)
  with pytest.raises(ValueJaxError, match="list over 3 groups"):
    NeuronSet.from_lape_masks(path, ["zh", "en", "fr"], num_neurons=10)
  with pytest.raises(ValueJaxError, match="group 'zh', layer 0: neuron index 7 is outside"):
    NeuronSet.from_lape_masks(path, ["zh", "en"], num_neurons=6)
  torch.save({"weights": torch.nn.Linear(2, 2)}, path)  # a module: code, not data
  with pytest.raises(ValueJaxError, match="not just tensors"):
    NeuronSet.from_lape_masks(path, ["zh"], num_neurons=6)


@pytest.mark.slow
def test_a_mask_file_runs_through_the_launchers_as_the_neuron_set(tmp_path):
  """The authors' masks evaluated with our edits, size-matched controls and metric: locate.rule = masks."""
  import json
  import os
  from tests.helpers import launch as _launch, ok as _ok
  from tests import tiny_models
  model = tiny_models.save_word_level_llama(str(tmp_path / "m"), tiny_models.tiny_tokenizer(), 96)
  rng = np.random.default_rng(1)
  groups = ["openness_to_change", "conservation", "self_enhancement", "self_transcendence"]
  masks = [[torch.tensor(np.sort(rng.choice(48, size=k, replace=False))) for k in (2, 1, 3)] for _ in groups]
  path = str(tmp_path / "activation_mask")
  torch.save(masks, path)
  wd = str(tmp_path / "w")
  _ok(_launch("launch.run", "--config=configs/lape.py:smoke", f"--workdir={wd}", f"--config.model={model}",
              "--config.locate.rule=masks", f"--config.locate.masks={path}"))
  summary = json.load(open(os.path.join(wd, "locate", "summary.json")))
  assert [summary["lape"]["groups"][g]["per_layer"] for g in groups] == [[2, 1, 3]] * 4
  metrics = json.load(open(os.path.join(wd, "intervene", "metrics.json")))
  effects = [e for p in metrics["units"] for e in p["effects"]]
  assert len(effects) == 4 and all(e["n_neurons"] == 6 and e["n_controls"] == 2 for e in effects)
