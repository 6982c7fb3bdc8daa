"""The positive control (LAPE language neurons, configs/languages.py) end to end on a tiny model whose
tokenizer reads the shipped bilingual dilemmas, its section in the main report, and the memory-bounded
log-probabilities it is scored with.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests import tiny_models
from tests.helpers import launch as _launch, ok as _ok, smoke_args as _smoke_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bilingual_model(tmp_path_factory) -> str:
  """A random 3-layer llama whose word-level vocabulary holds every word and Chinese character of the
  shipped dilemmas (each character one token), saved as an HF folder."""
  import transformers as t
  from tokenizers import Regex, Tokenizer, models, pre_tokenizers
  from valuejax import data as vdata

  pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"[\n\u3000-\u9fff\uff00-\uffef]"), "isolated"),
                                 pre_tokenizers.Split(Regex(r"[ \t]+"), "removed"), pre_tokenizers.Punctuation()])
  words = set()
  for x in vdata.load_framework("cvoice").dilemmas:
    for text in x.texts.values():
      for s in (text.context, text.aligned, text.violating):
        words.update(w for w, _ in pre.pre_tokenize_str(s))
  specials = ["<pad>", "<s>", "</s>", "<unk>", "\n"]
  vocab = {w: i for i, w in enumerate(specials + sorted(words - set(specials)))}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre
  fast = t.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
  return tiny_models.save_word_level_llama(str(tmp_path_factory.mktemp("bilingual_llama")), fast, len(vocab))


def _json(path: str):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


@pytest.mark.slow
def test_positive_control_runs_inside_the_main_run_and_is_reported(bilingual_model, tmp_path):
  wd = str(tmp_path / "run")
  # 15% of the 144 neurons, so that each language keeps some of its own.
  args = _smoke_args(bilingual_model, wd) + ["--config.positive_control=languages.py:smoke,top=0.15"]
  _ok(_launch("launch.run", *args))
  sub = os.path.join(wd, "positive_control")
  cfg = _json(os.path.join(sub, "config.json"))["config"]
  assert cfg["method"] == "languages" and cfg["model"] == bilingual_model  # the main run's model
  metrics = _json(os.path.join(sub, "intervene", "metrics.json"))
  assert metrics["metric"] == "language_nll"
  assert [p["unit"] for p in metrics["units"]] == ["zh", "en"]
  located = _json(os.path.join(sub, "locate", "summary.json"))["lape"]["groups"]
  for p in metrics["units"]:
    (e,) = p["effects"]
    assert e["expected"] == "greater" and e["n"] == 3 and len(e["control_effects"]) == 2
    # Only the target's own neurons: at most its set minus what it shares with the other language's.
    assert 0 < e["n_neurons"] <= located[p["unit"]]["count"]
    # The effect is the change of the target's loss minus the change of the other language's.
    comp = e["components"]
    assert e["mean"] == pytest.approx(comp["target_nll"] - comp["other_nll"], abs=1e-9)
    for k, ce in enumerate(e["control_effects"]):
      cc = e["control_components"]
      assert ce == pytest.approx(cc["target_nll"][k] - cc["other_nll"][k], abs=1e-9)
  report = open(os.path.join(wd, "report.md"), encoding="utf-8").read()
  assert "## Can this run see an effect?" in report
  zh = metrics["units"][0]["effects"][0]
  assert f"effect {zh['mean']:+.3g} [{zh['ci_low']:+.3g}, {zh['ci_high']:+.3g}]" in report
  # A results page from the workdir: the summary row, the run's report embedded, its figures copied.
  page = tmp_path / "docs" / "results.md"
  proc = _ok(_launch("launch.results", f"--workdirs={wd}", f"--out={page}", "--title=Smoke results"))
  assert str(page) in proc.stdout
  text = page.read_text(encoding="utf-8")
  assert text.startswith("# Smoke results") and "nothing on this page is typed by hand" in text
  assert f"| run | `{bilingual_model}` | valuelocate (reversed contrast) |" in text and "zh: " in text
  assert "### Can this run see an effect?" in text and "python -m launch.run --config=" in text
  assert "**Time per model**" in text and f"`{bilingual_model}` " in text and "min (1 run)" in text
  assert (tmp_path / "docs" / "run" / "effects.png").is_file() and "](run/effects.png)" in text
  bad = _launch("launch.results", f"--workdirs={tmp_path / 'nothing'}", f"--out={tmp_path / 'x.md'}")
  assert bad.returncode == 2 and "not a valuejax workdir" in bad.stderr and "Traceback" not in bad.stderr
  # A rerun finds the control done for the same config and reads it back.
  again = _ok(_launch("launch.run", *args))
  assert again.stderr.count("skipped") >= 6  # three stages of the run and three of the control
  assert _json(os.path.join(sub, "intervene", "metrics.json")) == metrics


def test_language_items_are_seeded_and_parallel():
  from configs import languages
  from valuejax.methods import METHODS
  from valuejax.methods.languages import language_items
  config = languages.get_config("smoke")
  ds = METHODS.get("languages").load_dataset(config)
  a = language_items(config, ds, "eval", 5)
  assert [x.item_id for x in a] == [x.item_id for x in language_items(config, ds, "eval", 5)]
  assert len({x.item_id.rsplit("-", 1)[0] for x in a}) > 1  # spread over values, not the file's first one
  by_id = {x.id: x for x in ds.dilemmas}
  for x in a:
    assert by_id[x.item_id].split == "eval" and set(x.texts) == {"zh", "en"}
    assert x.texts["en"].startswith(by_id[x.item_id].texts["en"].context)
  with config.unlocked():
    config.data.seed = 1
  assert [x.item_id for x in language_items(config, ds, "eval", 5)] != [x.item_id for x in a]


def test_target_logprobs_equal_the_full_log_softmax():
  """Scanned blocks of positions (a last block cut short, one row per block or many) give the gather from
  the whole [B, T, V] log-softmax."""
  import jax
  import jax.numpy as jnp

  from valuejax.models.forward import forward, target_logprobs
  _, cfg, params = tiny_models.valuejax_model("gemma2")  # soft-capped final logits
  ids, mask = tiny_models.padded_batch()
  hidden, _ = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask), logits="hidden")
  logits, _ = forward(params, cfg, jnp.asarray(ids), jnp.asarray(mask))
  want = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), jnp.asarray(ids)[..., None], -1)[..., 0]
  for rows in (1, 7, 64, 1000):
    got = target_logprobs(params, cfg, hidden, jnp.asarray(ids), rows=rows)
    # log-softmax of V = 96 float32 logits: rounding of a sum of 96 exponentials, relative to the values.
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=96 * 2 ** -23 * 8)


def test_scored_continuations_can_be_cut_to_their_first_tokens():

  from valuejax.evaluate import continuation_logprobs_many
  from valuejax.intervene import deactivate
  _, cfg, params = tiny_models.valuejax_model("llama")
  tok = tiny_models.tiny_tokenizer()
  conts = [" ".join(f"w{i}" for i in range(5, 5 + n)) for n in (9, 3, 12)]
  mask = np.zeros((cfg.num_layers, cfg.intermediate_size), bool)
  mask[:, :4] = True
  edits = [None, deactivate(mask)]
  cut = continuation_logprobs_many(params, cfg, tok, ["w1"] * 3, conts, edits, max_tokens=4)
  short = [" ".join(c.split()[:4]) for c in conts]
  whole = continuation_logprobs_many(params, cfg, tok, ["w1"] * 3, short, edits)
  for a, b in zip(cut, whole):
    np.testing.assert_array_equal(a.num_tokens, [4, 3, 4])
    np.testing.assert_allclose(a.sum_logprob, b.sum_logprob, rtol=1e-6, atol=1e-5)
