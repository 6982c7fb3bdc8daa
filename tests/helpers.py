"""What the launcher tests share: the tiny word-level llama they run on, the smoke arguments, running a
launcher as a process (`launch`, `ok`) or inside this one (`launch_in_process`), and reading its outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import os
import subprocess
import sys

import numpy as np

from tests import tiny_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("i you we they the a an and or but to of in on at for with my your is are was would will do "
         "not what how why when your work family friend new old way time people life choose keep try "
         "help rule risk safe change stay plan home job money power success care others world answer "
         "question situation because first person value".split())
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def save_tiny_chat_llama(folder: str) -> str:
  """A random 3-layer llama with a word-level tokenizer of WORDS and a chat template, saved as an HF folder."""
  import transformers as t
  from tokenizers import Tokenizer, models, pre_tokenizers

  specials = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]
  vocab = {w: i for i, w in enumerate(specials + sorted(set(WORDS)) + list("ABCDEF.,?!:"))}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
  fast = t.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
  fast.chat_template = CHAT
  return tiny_models.save_word_level_llama(folder, fast, len(vocab))


def write_workbook(path, sheets: dict[str, list[list]]):
  """An .xlsx file at `path` with one sheet per entry of `sheets` (title -> rows), in that order."""
  import openpyxl
  wb = openpyxl.Workbook()
  wb.remove(wb.active)
  for title, rows in sheets.items():
    ws = wb.create_sheet(title)
    for r in rows:
      ws.append(r)
  wb.save(path)
  return path


def write_cvoice_release(folder) -> list[str]:
  """A released C-voice folder in miniature: one activation workbook (`公正-final.xlsx`, one dilemma) and the
  evaluation workbook (`test-zh-200.xlsx`, one dilemma in a sheet named by its value). Returns the ids the
  loader gives them: the locate dilemma's, then the eval dilemma's."""
  write_workbook(os.path.join(folder, "公正-final.xlsx"), {"Sheet1": [
      ["冲突类型", "决策困境", "选择A", "选择B"],
      ["公正 vs 徇私", "你负责评选先进员工，表弟也在候选名单里。", "按业绩评选。", "把名额给表弟。"]]})
  write_workbook(os.path.join(folder, "test-zh-200.xlsx"), {"公正": [
      ["Type", "Context", "Action1", "Action2"],
      ["公正 vs 偏袒", "你是裁判，一方是你的老同学。", "公正判罚。", "暗中偏向老同学。"]]})
  return ["cvoice-final-justice-0002", "cvoice-test-justice-0002"]


def smoke_args(model: str, workdir: str, config: str = "configs/valuelocate.py:smoke") -> list[str]:
  """The flags of a smoke run of `config` on `model` in `workdir`."""
  args = [f"--config={config}", f"--workdir={workdir}", f"--config.model={model}"]
  if config.startswith("configs/valuelocate.py"):
    # Exactly 12 neurons per aspect (an exact count), so random controls always find enough unlocated
    # neurons per layer.
    args += ["--config.locate.size=12"]
  return args


def launch(module: str, *args: str, process: bool = False, timeout: float = 600):
  """Launcher `module` run with `args` from the repository root, its exit status and output captured.

  By default inside this process (`launch_in_process`: the same flag parsing, error boundary and log lines,
  without a process start and a second import of jax, and with the programs this process compiled before);
  `process=True` starts `python -m module args`, for what only a process shows (its exit status as the shell
  sees it, a signal, a fresh interpreter)."""
  if not process:
    return launch_in_process(module, *args)
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)


def ok(proc):
  """`proc` (a finished process or an in-process launch), asserting that it exited 0."""
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def arrays(path: str) -> dict[str, np.ndarray]:
  """Every array of an .npz file."""
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def refused(proc, *needles: str) -> str:
  """The stderr of a launch that ended at the error boundary: exit 2, no traceback, every needle named."""
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  for n in needles:
    assert n in proc.stderr, (n, proc.stderr[-3000:])
  return proc.stderr


@dataclasses.dataclass
class InProcess:
  """What `launch_in_process` saw: the exit status and what the launcher wrote."""
  returncode: int
  stdout: str
  stderr: str


def launch_in_process(module: str, *args: str) -> InProcess:
  """Runs launcher `module` with `args` inside this process, through the same flag parsing and error boundary
  (`launch.cli.parse_flags`, the launcher's `CLI.boundary`) as `python -m module args`, and returns its exit
  status and output: what it printed, and the log lines (absl's and valuejax's, INFO and up) that its process writes to
  stderr. No process start and no second import of jax; the model (`launch.runtime`'s per-process cache) and
  the compiled programs are this process's. The flags are put back as they were after each call (absl keeps one
  global flag registry, to which config_flags adds a `config.<key>` flag for each override it parses)."""
  import logging as pylogging
  from absl import flags, logging as absl_logging
  from launch import cli
  entry = importlib.import_module(module).CLI  # the launcher's own cli.Launcher, as its __main__ runs it
  argv = [sys.modules[module].__file__, *args]  # as `python -m module` sets it: the command a run records reads it
  names = set(flags.FLAGS)
  saved_argv = sys.argv
  out, err = io.StringIO(), io.StringIO()
  code = 0
  # Without --config, a launcher's process reads the default config, and applies the overrides it finds in
  # sys.argv, when launch.cli defines the flag at import: that is done again here, with this argv.
  default_config = None if any(a == "--config" or a.startswith("--config=") for a in args) else flags.FLAGS["config"]
  sys.argv = argv  # config_flags reads the overrides from sys.argv when it parses --config
  # The log lines a launcher's process prints (app.run installs absl's handler on the root logger): here one
  # handler on each logger the code logs to, writing to the captured stderr, and nothing passed up to pytest's.
  handler = pylogging.StreamHandler(err)
  handler.setFormatter(absl_logging.PythonFormatter())
  loggers = [pylogging.getLogger(n) for n in ("absl", "valuejax")]
  saved_loggers = [(lg.level, lg.propagate) for lg in loggers]
  for lg in loggers:
    lg.addHandler(handler)
    lg.setLevel(pylogging.INFO)
    lg.propagate = False
  try:
    with contextlib.chdir(REPO), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        if default_config is not None:
          delattr(flags.FLAGS, "config")
          cli._define_config_flag()
        entry.boundary(cli.parse_flags(argv, extra=entry.extra_flags))
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  finally:
    for lg, (level, propagate) in zip(loggers, saved_loggers):
      lg.removeHandler(handler)
      lg.setLevel(level)
      lg.propagate = propagate
    sys.argv = saved_argv
    flags.FLAGS.unparse_flags()
    for name in set(flags.FLAGS) - names:
      delattr(flags.FLAGS, name)
    if default_config is not None:
      if "config" in flags.FLAGS:
        delattr(flags.FLAGS, "config")
      flags.FLAGS["config"] = default_config
  return InProcess(code, out.getvalue(), err.getvalue())


def neuron_set(name: str, groups: dict, layers: int = 2, neurons: int = 10):
  """A NeuronSet from flat indices (layer * neurons + neuron) per group, for the stability tests."""
  from valuejax.locate import GroupNeurons, NeuronSet
  made = {g: GroupNeurons.create(np.asarray([i // neurons for i in ix], np.int64),
                                 np.asarray([i % neurons for i in ix], np.int64), layers, neurons)
          for g, ix in groups.items()}
  return NeuronSet(made, {"method": name})
