"""Steering in one line: the unedited answer beside enhance, reverse and a size-matched random control, from
a finished run's workdir (launch.steer) or from Python (steer_answers)."""

from __future__ import annotations

import numpy as np

import pytest

from tests.helpers import launch as _launch, ok as _ok


@pytest.mark.slow
def test_steer_prints_every_variant_side_by_side(smoke_run, tmp_path):
  wd = smoke_run.copy(str(tmp_path / "w"))  # the session's finished smoke run
  out = _ok(_launch("launch.steer", f"--workdir={wd}", "--gamma=4", "--prompt=what would you do",
                    "--prompt=how do you choose a new job", "--max_new_tokens=5", "--controls=2")).stdout
  assert out.count("== prompt") == 2 and "== prompt 2: how do you choose a new job" in out
  for variant in ("-- unedited:", "-- enhance openness_to_change (gamma 4):",
                  "-- reverse: toward openness_to_change_reversed", "-- random neurons, same counts, enhanced (1):",
                  "-- random neurons, same counts, enhanced (2):"):
    assert out.count(variant) == 2, (variant, out)


def test_steer_answers_are_deterministic_and_the_strong_push_changes_them():
  from tests import tiny_models
  from valuejax.locate.neuron_set import GroupNeurons, NeuronSet
  from valuejax.methods.steer import steer_answers
  model = tiny_models.tiny_model_object("llama")
  cfg = model.config
  rng = np.random.default_rng(0)
  mask = rng.random((2, cfg.num_layers, cfg.intermediate_size)) < 0.3
  scores = lambda m: {"p": np.where(m, 0.9, 0.0), "delta": np.where(m, 0.5, 0.0)}
  ns = NeuronSet({g: GroupNeurons.from_mask(mask[i], scores(mask[i])) for i, g in enumerate(("up", "down"))})
  kw = dict(gamma=200.0, keep_prob=1.0, max_new_tokens=6, chat=False)
  a = steer_answers(model, ns, "up", "down", ["w1 w2 w3", "w4"], **kw)
  b = steer_answers(model, ns, "up", "down", ["w1 w2 w3", "w4"], **kw)
  assert [x.answers for x in a] == [x.answers for x in b]
  assert list(a[0].answers)[0] == "unedited" and len(a[0].answers) == 4
  assert any(x.answers["unedited"] != x.answers["enhance up (gamma 200)"] for x in a)
