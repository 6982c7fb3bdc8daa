"""Open answers under steering, kept as data: one JSONL record per generated text, with its prompt and
edit, written atomically so a crashed run never leaves a half file behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Mapping

from valuejax import fileio
from valuejax.errors import ValueJaxError


@dataclasses.dataclass(frozen=True)
class GenerationRecord:
  item_id: str
  prompt: str
  text: str  # the generated answer, without the prompt
  edit: str = "baseline"  # the edit's name
  sample: int = 0  # index among samples of the same (item, edit)
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # aspect, gamma, seed, judge score ...

  def to_dict(self) -> dict:
    return {**dataclasses.asdict(self), "metadata": dict(self.metadata)}


_FIELDS = {f.name for f in dataclasses.fields(GenerationRecord)}


def write_records(path: str | os.PathLike, records: Iterable[GenerationRecord]) -> None:
  lines = [json.dumps(r.to_dict(), ensure_ascii=False) for r in records]
  fileio.write_text(path, "".join(line + "\n" for line in lines))


def read_records(path: str | os.PathLike) -> list[GenerationRecord]:
  out = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{os.fspath(path)}:{lineno}"
      try:
        d = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueJaxError(f"not valid JSON ({e.msg})", where=where) from None
      missing = {"item_id", "prompt", "text"} - set(d)
      unknown = set(d) - _FIELDS
      if missing or unknown:
        raise ValueJaxError(f"record fields missing {sorted(missing)} / unknown {sorted(unknown)}", where=where,
                            fix="write records with valuejax.evaluate.write_records")
      out.append(GenerationRecord(**d))
  return out
