"""judge: alignment (1-5) of open answers with the unit's value, scored by an LLM judge (ValueLocate's own
readout, docs/fidelity.md "readout").

For a ValueLocate pair the value is `unit.plus`; its items are the eval split's situational questions (the
method's `choice_items`, asked as open questions as the report's examples ask them). Under each edit the model
answers every question greedily (`intervene.judge_max_new_tokens`), and the judge rates each answer against the
value's rubric (data/judge_rubrics.json) `samples` times; an item's score is the mean of its valid samples, NaN
when none is valid (then the pairing drops it and counts it). Higher = more aligned with the value, so the
steering edits' predicted directions ("greater" for enhance) apply as they are.

Settings live in `intervene.judge` (see configs/valuelocate.py and docs/judge.md); an address and a model name
are required, and the launcher probes the endpoint once before any model loads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.metrics.base import METRICS, Metric, Scored, answer_generator, needs
from valuejax.validate import POSITIVE

log = logging.getLogger("valuejax")

# The judge's settings, `intervene.judge.<key>`; their values are written once, in the config file (configs/
# valuelocate.py: the authors' g_eval.py sampling, 20 samples at temperature 2, at most 5 tokens, 5 tries each).
KEYS = ("base_url", "model", "api_key_env", "samples", "temperature", "max_tokens", "timeout_s", "retries",
        "http_retries", "concurrency", "cache_dir", "rubrics")
# Environment variables that stand in for an empty config entry.
ENV = {"base_url": "VALUEJAX_JUDGE_BASE_URL", "model": "VALUEJAX_JUDGE_MODEL"}
# Per edit in Scored.detail (and so in intervene/metrics.json): what the judge could not score.
DETAIL_KEYS = ("judge_dropped_samples", "judge_unscored_items", "judge_gibberish_replies")


def settings(config: mlc.ConfigDict) -> dict[str, Any]:
  """`intervene.judge`, the environment filling an empty base_url or model; checked."""
  from valuejax.validate import require
  require(config, ["intervene.judge." + k for k in KEYS], "the judge metric")
  section = config.intervene.judge
  unknown = sorted(set(section) - set(KEYS))
  if unknown:
    raise ValueJaxError(f"unknown key(s) {', '.join('intervene.judge.' + k for k in unknown)}",
                        "--config.intervene.judge", f"the judge's keys are: {', '.join(KEYS)}")
  s = {k: section[k] for k in KEYS}
  for key, var in ENV.items():
    s[key] = s[key] or os.environ.get(var, "")
  if not s["base_url"]:
    raise ValueJaxError("intervene.metric='judge' needs an LLM judge's address, and intervene.judge.base_url is "
                        "empty", "--config.intervene.judge.base_url",
                        "set it to an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 for `vllm serve <model>` "
                        f"(or set ${ENV['base_url']}); see docs/judge.md")
  if not s["model"]:
    raise ValueJaxError("intervene.metric='judge' needs the judge's model name, and intervene.judge.model is empty",
                        "--config.intervene.judge.model",
                        f"set it to the name the server serves (or set ${ENV['model']}); see docs/judge.md")
  checks = {"samples": (1, "an integer >= 1"), "max_tokens": (1, "an integer >= 1"),
            "retries": (1, "an integer >= 1"), "http_retries": (0, "an integer >= 0"),
            "concurrency": (1, "an integer >= 1")}
  for key, (low, what) in checks.items():
    if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < low:
      _bad(key, s[key], what)
  if not isinstance(s["temperature"], (int, float)) or not 0 <= s["temperature"] <= 2:
    _bad("temperature", s["temperature"], "a number in [0, 2]")
  if not isinstance(s["timeout_s"], (int, float)) or not s["timeout_s"] > 0:
    _bad("timeout_s", s["timeout_s"], "a positive number of seconds")
  return s


def _bad(key: str, value: Any, what: str) -> None:
  raise ValueJaxError(f"config entry intervene.judge.{key} = {value!r} is not valid; it must be {what}",
                      f"--config.intervene.judge.{key}", "set it on the command line or in the config file")


def judge_config(config: mlc.ConfigDict):
  """The client settings (`valuejax.evaluate.judge.JudgeConfig`) of this config; the API key is read from the
  environment variable `api_key_env` names (no key is sent when it is unset: local servers need none)."""
  from valuejax.evaluate.judge import JudgeConfig
  s = settings(config)
  key = os.environ.get(s["api_key_env"]) if s["api_key_env"] else None
  return JudgeConfig(s["base_url"], s["model"], api_key=key or None, samples=s["samples"],
                     temperature=float(s["temperature"]), timeout_s=float(s["timeout_s"]), max_tokens=s["max_tokens"],
                     retries=s["retries"], http_retries=s["http_retries"], concurrency=s["concurrency"])


def cache_path(config: mlc.ConfigDict) -> str:
  """The judgment cache file: one per judge model, under `intervene.judge.cache_dir`, else $VALUEJAX_CACHE/judge,
  else ~/.cache/valuejax/judge (shared by runs, so that a rerun or another run judging the same answers asks
  nothing twice)."""
  s = settings(config)
  root = s["cache_dir"] or os.path.join(os.environ.get("VALUEJAX_CACHE") or os.path.join("~", ".cache", "valuejax"),
                                        "judge")
  slug = re.sub(r"[^A-Za-z0-9._-]+", "_", s["model"]).strip("._") or "model"
  return os.path.join(os.path.expanduser(root), f"judgments-{slug}.json")


def load_rubrics(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
  """{value id: {"name", "text": {lang: text}}} from a rubric file (default: the shipped data/judge_rubrics.json)."""
  if not path:
    from valuejax.data.readers import shipped_data_dir
    path = shipped_data_dir() / "judge_rubrics.json"
  path = Path(path)
  try:
    obj = json.loads(path.read_text(encoding="utf-8"))
  except OSError as e:
    raise ValueJaxError(f"cannot read the judge's rubrics ({e.strerror})", str(path),
                        "set intervene.judge.rubrics to a rubric file, or '' for the shipped one") from None
  except json.JSONDecodeError as e:
    raise ValueJaxError(f"not valid JSON ({e.msg})", f"{path}:{e.lineno}") from None
  rubrics = obj.get("rubrics") if isinstance(obj, dict) else None
  if not isinstance(rubrics, dict) or not rubrics:
    raise ValueJaxError("a rubric file is a JSON object with 'rubrics': {value id: {name, text: {lang: text}}}",
                        str(path))
  out = {}
  for value, r in rubrics.items():
    texts = r.get("text") if isinstance(r, dict) else None
    if not isinstance(texts, dict) or not texts:
      raise ValueJaxError(f"rubric {value!r} has no 'text' ({{language: text or list of lines}})", str(path))
    joined = {lang: "\n".join(t) if isinstance(t, list) else t for lang, t in texts.items()}
    if not all(isinstance(t, str) and t.strip() for t in joined.values()):
      raise ValueJaxError(f"rubric {value!r} has an empty text", str(path))
    out[value] = {"name": str(r.get("name", value)), "text": joined}
  return out


def rubric_text(rubrics: dict[str, dict[str, Any]], value: str, lang: str, where: str) -> str:
  """The value's rubric in `lang`, else in English (the shipped rubrics are English; the judge reads any
  language's answers against them)."""
  if value not in rubrics:
    raise ValueJaxError(f"no judge rubric for value {value!r}", where,
                        f"add one to the rubric file (it has: {', '.join(sorted(rubrics))}) and set "
                        "intervene.judge.rubrics to it")
  texts = rubrics[value]["text"]
  if lang in texts:
    return texts[lang]
  if "en" in texts:
    return texts["en"]
  raise ValueJaxError(f"judge rubric {value!r} has no text in {lang!r} or 'en'", where)


@dataclasses.dataclass(frozen=True)
class JudgeItem:
  """One open question, answered under each edit and judged against `value`'s rubric."""
  item_id: str
  question: str
  value: str


@METRICS.register("judge")
class Judge(Metric):
  name = "judge"
  generates = True
  config_keys = {"data.lang": None, "data.chat": None, "intervene.judge_max_new_tokens": POSITIVE,
                 **{"intervene.judge." + k: None for k in KEYS}}
  description = ("alignment (1-5) of open answers with the pair's value, the mean of an LLM judge's samples "
                 "(ValueLocate's readout)")

  def __init__(self, generator: Any = None):
    # One Generator for every unit and edit, as in choice_protocol: one compiled executable per shape bucket,
    # the edit an argument of it.
    self._generator = generator
    self._rubrics: dict[str, dict[str, Any]] | None = None

  def check(self, config: mlc.ConfigDict, method: Any) -> None:
    """The method offers questions, and the judge's address, model and settings are set (before anything loads)."""
    needs(method, "choice_items", self.name, "questions to answer")
    settings(config)
    self.rubrics(config)

  def preflight(self, config: mlc.ConfigDict) -> None:
    """One short request to the judge, so that a wrong address, model or key fails before any model loads."""
    from valuejax.evaluate.judge import probe
    probe(judge_config(config))

  def rubrics(self, config: mlc.ConfigDict) -> dict[str, dict[str, Any]]:
    if self._rubrics is None:
      self._rubrics = load_rubrics(settings(config)["rubrics"])
    return self._rubrics

  def system_prompt(self, config: mlc.ConfigDict, value: str) -> str:
    where = settings(config)["rubrics"] or "data/judge_rubrics.json"
    return rubric_text(self.rubrics(config), value, config.data.lang, where)

  def items(self, config: mlc.ConfigDict, dataset: Any, method: Any, unit: Any) -> list[JudgeItem]:
    """The eval split's questions of the unit, each judged against the rubric of `unit.plus` (X of the pair)."""
    self.system_prompt(config, unit.plus)  # a value without a rubric fails here, in the preflight
    return [JudgeItem(x.item_id, x.question, unit.plus) for x in method.choice_items(config, dataset, unit)]

  def generator(self, config: mlc.ConfigDict, model: Any):
    if self._generator is None:
      self._generator = answer_generator(config, model)
    return self._generator

  def answers(self, config: mlc.ConfigDict, model: Any, items: Sequence[JudgeItem], edits: Sequence[Any]
              ) -> list[list[str]]:
    """Greedy answers ([E][N]) to the questions under each edit, the prompts encoded as the report's examples
    are (chat template when data.chat, <bos> where the model needs it)."""
    from valuejax import data as vdata
    from valuejax.engine import pack_rows, special_ids
    from valuejax.engine.generate import Sampling
    from valuejax.methods.examples import example_rows
    c, tok = config.intervene, model.tokenizer
    prompts = [vdata.Prompt(x.question, x.value, x.item_id, chat=bool(config.data.chat)) for x in items]
    rows = example_rows(model, prompts)
    pad = special_ids(tok, model.config).pad
    sampling = Sampling(repetition_penalty=config.record.repetition_penalty)
    generate = self.generator(config, model)
    out = []
    for e in edits:
      kw = {} if e is None else e.generate_kwargs()
      texts = []
      for s in range(0, len(rows), c.batch_size):
        ids, mask = pack_rows(rows[s:s + c.batch_size], pad_id=pad)
        g = generate(ids, mask, c.judge_max_new_tokens, sampling=sampling,
                     seed=config.seed, **kw)
        texts += [tok.decode(row[:n].tolist(), skip_special_tokens=True) for row, n in zip(g.tokens, g.lengths)]
      out.append(texts)
    return out

  def score(self, config: mlc.ConfigDict, model: Any, items: Sequence[JudgeItem], edits: Sequence[Any]) -> Scored:
    """Answers under each edit, judged; [E, N] means of the valid samples (NaN: no valid sample), with the
    dropped samples, unscored items and gibberish replies per edit in the detail."""
    from valuejax.evaluate.judge import JudgmentCache, judge_items
    cfg = judge_config(config)
    texts = self.answers(config, model, items, edits)
    systems = [self.system_prompt(config, x.value) for x in items]
    n_edits, n = len(edits), len(items)
    judged, counts = judge_items(cfg, systems * n_edits, [x.question for x in items] * n_edits,
                                 [t for row in texts for t in row], JudgmentCache(cache_path(config)))
    values = np.array([j.mean for j in judged], np.float64).reshape(n_edits, n)
    per_edit = lambda f: [int(sum(f(j) for j in judged[k * n:(k + 1) * n])) for k in range(n_edits)]
    detail = {"judge_dropped_samples": per_edit(lambda j: j.n_dropped),
              "judge_unscored_items": per_edit(lambda j: not j.scores),
              "judge_gibberish_replies": per_edit(lambda j: j.n_gibberish)}
    dropped, unscored = sum(detail["judge_dropped_samples"]), sum(detail["judge_unscored_items"])
    log.info("judge: %d samples asked, %d from the cache (%s)", counts["requested"], counts["cached"],
             cache_path(config))
    if dropped:
      log.warning("judge: %d of %d samples dropped (no valid score within the retries); %d answer(s) got no valid "
                  "sample and are left out of the paired means", dropped, len(judged) * cfg.samples, unscored)
    return Scored(values, texts=texts, detail=detail)

  def records(self, unit: str, items: Sequence[JudgeItem], scored: Scored, k: int, edit: str,
              meta: dict[str, Any]) -> list[Any]:
    from valuejax.evaluate import GenerationRecord
    return [GenerationRecord(x.item_id, x.question, t, edit, 0,
                             {"pair": unit, "metric": self.name, "value": x.value,
                              "judge_score": float(s) if np.isfinite(s) else None, **meta})
            for x, t, s in zip(items, scored.texts[k], scored.values[k])]
