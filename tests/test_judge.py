"""The LLM judge metric (`intervene.metric = "judge"`) against a chat-completions server on 127.0.0.1 started by
the tests: reply parsing, the mean of valid samples, retries (429 with Retry-After, 5xx), clear errors for a
bad endpoint, the judgment cache, counted drops, and the metric end to end on a tiny random model.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import socket
import subprocess
import sys
import threading

import ml_collections as mlc
import numpy as np
import pytest

from valuejax.data.readers import shipped_data_dir
from valuejax.errors import ValueJaxError
from valuejax.evaluate import judge as vj
from valuejax.metrics import METRICS
from valuejax.metrics import judge as mj


class Server:
  """An OpenAI-style /v1/chat/completions endpoint whose reply to each request is `respond(body)`: a text
  (HTTP 200 with that content), or (status, headers, raw bytes). Counts requests."""

  def __init__(self, respond):
    self.respond, self.requests, self.lock = respond, [], threading.Lock()
    outer = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with outer.lock:
          outer.requests.append((self.path, self.headers.get("Authorization"), body))
          out = outer.respond(body)
        if isinstance(out, str):
          data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": out}}]}).encode()
          status, headers = 200, {"Content-Type": "application/json"}
        else:
          status, headers, data = out
        self.send_response(status)
        for k, v in headers.items():
          self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

  @property
  def url(self) -> str:
    return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.httpd.shutdown()
    self.httpd.server_close()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _answer(body) -> str:
  """The answer the judge is asked about (the user message is 'Question: ...\n\nResponse:\n<answer>')."""
  return body["messages"][1]["content"].split("Response:\n", 1)[1]


def _cfg(url, **kw):
  kw = {"samples": 3, "retries": 2, "http_retries": 2, "concurrency": 1, "timeout_s": 10.0, **kw}
  return vj.JudgeConfig(url, "judge-model", temperature=2.0, max_tokens=5, **kw)


@pytest.mark.parametrize("reply, score, gibberish", [
    ("4", 4.0, False), ("Score: 5", 5.0, False), ("6", None, False), ("abc", None, False), ("-1", None, True),
    ("**3**", 3.0, False), (" 2.5", 2.5, False), ("Value Alignment: 1", 1.0, False), ("0", None, False),
    ("10", None, False), ("", None, False), ("I would say 4", None, False)])
def test_replies_parse_as_a_score_in_1_to_5(reply, score, gibberish):
  assert vj.parse_reply(reply) == (score, gibberish)


def test_an_items_score_is_the_mean_of_its_valid_samples_and_drops_are_counted(tmp_path):
  # One request at a time, so each answer's replies arrive in the order written: for "mixed", samples 0 and 1
  # are valid (4 and 5), sample 2 gets two invalid replies (retries=2) and is dropped; "noise" is always -1.
  script = {"mixed": iter(["4", "Score: 5", "abc", "6"]), "noise": iter(["-1"] * 6)}
  with Server(lambda body: next(script[_answer(body)])) as server:
    cfg = _cfg(server.url, api_key="secret")
    out, counts = vj.judge_items(cfg, ["rubric"] * 2, ["q1", "q2"], ["mixed", "noise"])
    path, auth, body = server.requests[0]
  mixed, noise = out
  assert mixed.scores == (4.0, 5.0) and mixed.mean == 4.5 and mixed.n_dropped == 1 and mixed.n_gibberish == 0
  assert math.isnan(noise.mean) and noise.scores == () and noise.n_dropped == 3 and noise.n_gibberish == 6
  assert counts == {"requested": 6, "cached": 0} and len(server.requests) == 4 + 6
  # The rubric is the system message, the question and answer the user message; the authors' sampling.
  assert path == "/v1/chat/completions" and auth == "Bearer secret"
  assert body["messages"][0] == {"role": "system", "content": "rubric"}
  assert body["messages"][1]["content"] == "Question:\nq1\n\nResponse:\nmixed"
  assert (body["model"], body["temperature"], body["max_tokens"]) == ("judge-model", 2.0, 5)


def test_429_waits_as_retry_after_says_and_a_500_is_retried():
  calls = iter([(429, {"Retry-After": "7"}, b"slow down"), (500, {}, b"oops"), "3"])
  waits = []
  with Server(lambda body: next(calls)) as server:
    cfg = _cfg(server.url, samples=1, backoff_s=0.25)
    (item,), _ = vj.judge_items(cfg, ["r"], ["q"], ["a"], sleep=waits.append)
  assert item.mean == 3.0 and item.n_dropped == 0 and len(server.requests) == 3
  # Retry-After wins over the backoff; the 500 after it waits the backoff of a second try (0.25 * 2).
  assert waits == [7.0, 0.5]


def test_retries_that_run_out_drop_the_sample_and_are_not_cached(tmp_path):
  waits = []
  with Server(lambda body: (503, {}, b"loading")) as server:
    cfg = _cfg(server.url, samples=2, http_retries=1)
    cache = vj.JudgmentCache(tmp_path / "j.json")
    (item,), _ = vj.judge_items(cfg, ["r"], ["q"], ["a"], cache=cache, sleep=waits.append)
    assert math.isnan(item.mean) and item.n_dropped == 2 and len(server.requests) == 2 * 2
    # Nothing was learnt about the answer, so a rerun asks again rather than reusing a drop.
    vj.judge_items(cfg, ["r"], ["q"], ["a"], cache=vj.JudgmentCache(tmp_path / "j.json"), sleep=waits.append)
    assert len(server.requests) == 2 * 2 * 2


def test_a_bad_endpoint_is_a_clear_error():
  url = f"http://127.0.0.1:{_free_port()}/v1"
  with pytest.raises(ValueJaxError, match="unreachable") as err:
    vj.probe(_cfg(url))
  assert f"{url}/chat/completions" in str(err.value) and "intervene.judge.base_url" in str(err.value)
  with Server(lambda body: (404, {}, b'{"error": "model not found"}')) as server:
    with pytest.raises(ValueJaxError, match="HTTP 404: .*model not found") as err:
      vj.judge_items(_cfg(server.url, samples=1), ["r"], ["q"], ["a"])
    assert "intervene.judge.model" in str(err.value) and len(server.requests) == 1  # a 404 is not retried
  with Server(lambda body: (200, {}, b"<html>not an API</html>")) as server:
    with pytest.raises(ValueJaxError, match="did not answer with JSON") as err:
      vj.probe(_cfg(server.url))
    assert server.url in str(err.value)


def test_a_second_run_reads_every_judgment_from_the_cache(tmp_path):
  with Server(lambda body: str(len(_answer(body)))) as server:
    cfg = _cfg(server.url, concurrency=3)
    path = tmp_path / "cache" / "judgments.json"
    first, counts = vj.judge_items(cfg, ["r"] * 3, ["q"] * 3, ["ab", "abcd", "ab"], cache=vj.JudgmentCache(path))
    # The two identical (rubric, question, answer) triples are asked once: 2 distinct x 3 samples.
    assert counts == {"requested": 6, "cached": 3} and len(server.requests) == 6
    again, counts = vj.judge_items(cfg, ["r"] * 3, ["q"] * 3, ["ab", "abcd", "ab"], cache=vj.JudgmentCache(path))
    assert counts == {"requested": 0, "cached": 9} and len(server.requests) == 6
    assert [x.mean for x in again] == [x.mean for x in first] == [2.0, 4.0, 2.0]
    # Every part of the key matters: another model, temperature or rubric asks again.
    vj.judge_items(vj.JudgeConfig(**{**cfg.__dict__, "temperature": 1.0}), ["r"], ["q"], ["ab"],
                   cache=vj.JudgmentCache(path))
    vj.judge_items(cfg, ["other rubric"], ["q"], ["ab"], cache=vj.JudgmentCache(path))
    assert len(server.requests) == 6 + 3 + 3
  assert json.loads(path.read_text())["version"] == 1 and not list(path.parent.glob(".*.tmp"))


def _config(url: str, cache_dir: str, **judge) -> mlc.ConfigDict:
  c = mlc.ConfigDict()
  c.seed = 0
  c.data = mlc.ConfigDict({"chat": True, "lang": "en"})
  c.record = mlc.ConfigDict({"repetition_penalty": 1.1})
  c.intervene = mlc.ConfigDict({"metric": "judge", "batch_size": 2, "judge_max_new_tokens": 6})
  from configs import valuelocate
  shipped = valuelocate.get_config("smoke").intervene.judge.to_dict()  # every judge entry, as configs ship them
  c.intervene.judge = mlc.ConfigDict({**shipped, "base_url": url, "model": "fake-judge", "samples": 3,
                                      "concurrency": 2, "cache_dir": cache_dir, **judge})
  return c


def _word_count_judge(body):
  """Scores an answer by its number of words (1 + n mod 5), and calls an empty answer gibberish. The launcher's
  probe (one user message) gets a "1"."""
  if len(body["messages"]) == 1:
    return "1"
  words = _answer(body).split()
  return str(1 + len(words) % 5) if words else "-1"


@pytest.mark.slow  # compiles generation or scoring programs of its own: seconds each
def test_the_metric_scores_answers_under_each_edit_through_the_judge(tmp_path):
  from tests import tiny_models
  from valuejax.intervene import deactivate
  model = tiny_models.tiny_model_object("llama")
  items = [mj.JudgeItem(f"s{i}", q, "conservation") for i, q in enumerate(["w10 w11 w12", "w20 w21", "w30"])]
  off = deactivate(np.ones((3, 80), bool), name="all off")  # every MLP neuron of the tiny llama: answers change
  with Server(_word_count_judge) as server:
    config = _config(server.url, str(tmp_path / "cache"))
    metric = METRICS.get("judge")()
    scored = metric.score(config, model, items, [None, off])
    asked = len(server.requests)
    # The metric's own rerun, from the cache, asks nothing.
    again = METRICS.get("judge")().score(config, model, items, [None, off])
    assert len(server.requests) == asked
  np.testing.assert_array_equal(again.values, scored.values)
  assert scored.values.shape == (2, 3) and scored.texts[0] != scored.texts[1]
  assert np.isfinite(scored.values).any(), scored.texts  # some answers were scored, not only dropped
  for k in range(2):
    for i, text in enumerate(scored.texts[k]):
      n = len(text.split())
      # Every sample of an answer gets the same score from this judge, so the mean is that score exactly.
      assert (scored.values[k, i] == 1 + n % 5) if n else np.isnan(scored.values[k, i]), (k, i, text)
  # The detail counts what went unscored per edit (empty answers: all 3 samples dropped, 3 x 5 -1 replies).
  empty = [[not t.split() for t in row] for row in scored.texts]
  assert scored.detail["judge_unscored_items"] == [sum(e) for e in empty]
  assert scored.detail["judge_dropped_samples"] == [3 * sum(e) for e in empty]
  assert scored.detail["judge_gibberish_replies"] == [15 * sum(e) for e in empty]
  # The system message is the value's rubric from the shipped rubric file.
  system = server.requests[0][2]["messages"][0]["content"]
  shipped = json.loads((shipped_data_dir() / "judge_rubrics.json").read_text(encoding="utf-8"))
  assert system == "\n".join(shipped["rubrics"]["conservation"]["text"]["en"]) and "Conservation" in system
  records = metric.records("conservation_vs_x", items, scored, 1, "all off", {"gamma": 2.0})
  assert [r.text for r in records] == scored.texts[1] and records[0].metadata["value"] == "conservation"


def test_settings_need_an_address_and_a_model_and_are_checked(tmp_path, monkeypatch):
  monkeypatch.delenv("VALUEJAX_JUDGE_BASE_URL", raising=False)
  monkeypatch.delenv("VALUEJAX_JUDGE_MODEL", raising=False)
  with pytest.raises(ValueJaxError, match="intervene.judge.base_url is empty") as err:
    mj.settings(_config("", ""))
  assert "http://127.0.0.1:8000/v1" in str(err.value)
  with pytest.raises(ValueJaxError, match="intervene.judge.model is empty"):
    mj.settings(_config("http://127.0.0.1:1/v1", "", model=""))
  with pytest.raises(ValueJaxError, match="intervene.judge.samples = 0"):
    mj.settings(_config("http://127.0.0.1:1/v1", "", samples=0))
  with pytest.raises(ValueJaxError, match="unknown key.*intervene.judge.sample\\b"):
    mj.settings(_config("http://127.0.0.1:1/v1", "", sample=3))
  monkeypatch.setenv("VALUEJAX_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
  monkeypatch.setenv("MY_JUDGE_KEY", "k")
  cfg = mj.judge_config(_config("", "", api_key_env="MY_JUDGE_KEY"))
  assert cfg.endpoint == "http://127.0.0.1:9/v1/chat/completions" and cfg.api_key == "k"
  assert (cfg.samples, cfg.temperature, cfg.max_tokens, cfg.retries) == (3, 2.0, 5, 5)
  path = mj.cache_path(_config("", str(tmp_path), model="org/judge:7b"))
  assert path == str(tmp_path / "judgments-org_judge_7b.json")


def test_a_value_without_a_rubric_fails_with_the_values_that_have_one(tmp_path):
  rubrics = mj.load_rubrics()
  assert set(rubrics) >= {"openness_to_change", "conservation", "self_enhancement", "self_transcendence"}
  with pytest.raises(ValueJaxError, match="no judge rubric for value 'kindness'") as err:
    mj.rubric_text(rubrics, "kindness", "en", "data/judge_rubrics.json")
  assert "self_transcendence" in str(err.value)
  bad = tmp_path / "r.json"
  bad.write_text('{"rubrics": {"x": {"text": {"en": ""}}}}')
  with pytest.raises(ValueJaxError, match="empty text"):
    mj.load_rubrics(bad)


def test_the_valuelocate_config_fails_before_any_model_loads_without_a_judge(tmp_path):
  """The shipped config with metric=judge and no base_url: exit 2 with the key to set, no model loaded."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("VALUEJAX_JUDGE_")}
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-m", "launch.run", "--config=configs/valuelocate.py:smoke",
                         f"--workdir={tmp_path}/w", "--config.model=no/such-model", "--config.intervene.metric=judge"],
                        cwd=repo, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "intervene.judge.base_url" in proc.stderr and "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "w" / "record")
