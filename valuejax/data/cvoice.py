"""Reader for the released C-voice workbooks (Chinese only), producing the same Dilemma items as JSONL.

Activation: `<value>-final.xlsx` (冲突类型 决策困境 选择A 选择B); evaluation: `test-zh-200.xlsx` (sheet per value).

The released workbooks are read as released: a row with an empty required cell is skipped (one warning per
sheet counts them and lists their row numbers), extra columns are ignored, and near-duplicates in the
authors' files are reported, not blamed on the reader. `strict=True` refuses such rows instead.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from valuejax.data.readers import (
    _check_ids, _check_split_leak, _warn_near_duplicates, load_framework, shipped_data_dir)
from valuejax.data.schema import Dataset, Dilemma, DilemmaText, FrozenMap, Taxonomy
from valuejax.errors import ValueJaxError

ACTIVATION_COLUMNS = ("冲突类型", "决策困境", "选择A", "选择B")
EVAL_COLUMNS = ("Type", "Context", "Action1", "Action2")
EVAL_WORKBOOK = "test-zh-200.xlsx"
ACTIVATION_SUFFIX = "-final.xlsx"
# Chinese has no word boundaries, so "公正vs偏私" must split as well as "公正 vs 偏私".
_VS = re.compile(r"\s*(?:v\.s\.|vs\.?)\s*", re.IGNORECASE)


def _cvoice_taxonomy(taxonomy: Taxonomy | None) -> Taxonomy:
  return taxonomy if taxonomy is not None else load_framework(shipped_data_dir() / "cvoice").taxonomy


def _open(path: Path):
  import openpyxl  # only the workbook reader needs it; JSONL users never pay the import
  try:
    return openpyxl.load_workbook(path, read_only=True, data_only=True)
  except FileNotFoundError:
    raise ValueJaxError("file not found", str(path), "check the path") from None
  except (zipfile.BadZipFile, OSError, KeyError, ValueError) as e:
    raise ValueJaxError(f"not a readable .xlsx workbook ({type(e).__name__}: {e})", str(path),
                        "export the sheet as Excel .xlsx") from None


def _cell(v: Any) -> str:
  if v is None:
    return ""
  if isinstance(v, float) and v.is_integer():
    v = int(v)
  return str(v).strip()


class SkippedRowsWarning(UserWarning):
  """Rows of a released workbook skipped because a required cell is empty."""


def _rows(ws, where: str, columns: Sequence[str], strict: bool = False) -> Iterator[tuple[int, dict[str, str]]]:
  """(row number, {column: text}) per non-empty row, after checking the header has the columns. A row with
  an empty required cell is an error with `strict`, else skipped and reported once per sheet."""
  rows = ws.iter_rows(values_only=True)
  header = next(rows, None)
  names = [_cell(c) for c in (header or ())]
  missing = [c for c in columns if c not in names]
  if missing:
    raise ValueJaxError(
        f"wrong columns: missing {missing}; the header row has {[n for n in names if n]}",
        f"{where}:row 1", f"the first row must name the columns {list(columns)}")
  index = {c: names.index(c) for c in columns}
  skipped: list[int] = []
  for n, row in enumerate(rows, 2):
    row = tuple(row or ())
    cells = {c: _cell(row[i]) if i < len(row) else "" for c, i in index.items()}
    if not any(cells.values()):
      continue
    empty = [c for c, text in cells.items() if not text]
    if empty and strict:
      raise ValueJaxError(f"empty text in column '{empty[0]}'", f"{where}:row {n}",
                          "fill the cell or delete the row (or read with strict=False to skip such rows)")
    if empty:
      skipped.append(n)
      continue
    yield n, cells
  if skipped:
    warnings.warn(f"{where}: skipped {len(skipped)} row(s) with an empty required cell (rows "
                  f"{', '.join(map(str, skipped))}); the other rows are read", SkippedRowsWarning, stacklevel=3)


def _split_conflict(text: str, where: str, required: bool) -> tuple[str, str] | None:
  parts = _VS.split(text, maxsplit=1)
  if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
    if required:
      raise ValueJaxError(f"conflict type {text!r} is not written 'value vs anti-value'", where)
    return None
  return parts[0].strip(), parts[1].strip()


def _resolve(tax: Taxonomy, label: str, where: str, what: str) -> str:
  try:
    return tax.value_by_label(label).id
  except KeyError:
    known = ", ".join(f"{v.id} ({v.label('zh')})" for v in tax.values)
    raise ValueJaxError(f"unknown value label '{label}' in the {what}", where,
                        f"name it after one of: {known}") from None


def _dilemma(tax: Taxonomy, value: str, ident: str, split: str, conflict: str, context: str,
             aligned: str, violating: str, where: str, conflict_required: bool) -> Dilemma:
  pair = _split_conflict(conflict, where, conflict_required)
  if pair is not None:
    try:
      named = tax.value_by_label(pair[0]).id
    except KeyError:
      named = value  # the file name decides the value; free wording on the left of "vs" is tolerated
    if named != value:
      raise ValueJaxError(f"conflict type {conflict!r} names value '{named}', but this sheet is for "
                          f"'{value}'", where, "move the row to the workbook of its own value")
    anti = pair[1]
  else:
    fallback = tax.value(value).anti_value
    if not fallback or "zh" not in fallback:
      raise ValueJaxError(f"type {conflict!r} names no anti-value and the taxonomy gives none for "
                          f"'{value}'", where, "write the type as 'value vs anti-value'")
    anti = fallback["zh"]
  if aligned == violating:
    raise ValueJaxError("the two choices are the same text", where)
  return Dilemma(ident, value, split, FrozenMap({"zh": anti}),
                 FrozenMap({"zh": DilemmaText(context, aligned, violating)}), conflict)


def read_cvoice_activation(path: str | os.PathLike, taxonomy: Taxonomy | None = None, strict: bool = False
                           ) -> tuple[Dilemma, ...]:
  """One `<value>-final.xlsx`: every row a 'locate' dilemma; 选择A is the value-aligned choice."""
  path = Path(path)
  if not path.name.endswith(ACTIVATION_SUFFIX):
    raise ValueJaxError(f"an activation workbook is named '<value>{ACTIVATION_SUFFIX}'", str(path))
  tax = _cvoice_taxonomy(taxonomy)
  value = _resolve(tax, path.name[:-len(ACTIVATION_SUFFIX)], str(path), "workbook name")
  wb = _open(path)
  try:
    out, wheres = [], []
    for ws in wb.worksheets:
      where = str(path) if len(wb.worksheets) == 1 else f"{path}[{ws.title}]"
      for n, c in _rows(ws, where, ACTIVATION_COLUMNS, strict):
        suffix = f"{n:04d}" if len(wb.worksheets) == 1 else f"{ws.title}-{n:04d}"
        out.append(_dilemma(tax, value, f"cvoice-final-{value}-{suffix}", "locate", c["冲突类型"],
                            c["决策困境"], c["选择A"], c["选择B"], f"{where}:row {n}", True))
        wheres.append(f"{where}:row {n}")
  finally:
    wb.close()
  return _checked(out, wheres, strict)


def _checked(out: list[Dilemma], wheres: list[str], strict: bool) -> tuple[Dilemma, ...]:
  """Unique ids (an error names both rows) and near-duplicate texts (a warning) across one workbook's rows."""
  _check_ids([(d.id, w) for d, w in zip(out, wheres)], {})
  _warn_near_duplicates(out, wheres, "dilemmas", released=not strict)
  return tuple(out)


def read_cvoice_eval(path: str | os.PathLike, taxonomy: Taxonomy | None = None, strict: bool = False
                     ) -> tuple[Dilemma, ...]:
  """`test-zh-200.xlsx`: one sheet per value, every row an 'eval' dilemma; Action1 is value-aligned."""
  path = Path(path)
  tax = _cvoice_taxonomy(taxonomy)
  wb = _open(path)
  try:
    out, wheres = [], []
    for ws in wb.worksheets:
      where = f"{path}[{ws.title}]"
      value = _resolve(tax, ws.title, where, "sheet name")
      for n, c in _rows(ws, where, EVAL_COLUMNS, strict):
        out.append(_dilemma(tax, value, f"cvoice-test-{value}-{n:04d}", "eval", c["Type"], c["Context"],
                            c["Action1"], c["Action2"], f"{where}:row {n}", False))
        wheres.append(f"{where}:row {n}")
  finally:
    wb.close()
  return _checked(out, wheres, strict)


def read_cvoice_release(folder: str | os.PathLike, taxonomy: Taxonomy | None = None, strict: bool = False
                        ) -> Dataset:
  """A folder of released workbooks (every `*-final.xlsx`, plus `test-zh-200.xlsx` if present), read as
  released (see the module's docstring); `strict=True` refuses rows with an empty required cell."""
  folder = Path(folder)
  tax = _cvoice_taxonomy(taxonomy)
  finals = sorted(folder.glob(f"*{ACTIVATION_SUFFIX}"))
  test = folder / EVAL_WORKBOOK
  if not finals and not test.is_file():
    raise ValueJaxError(f"no '*{ACTIVATION_SUFFIX}' or '{EVAL_WORKBOOK}' workbooks", str(folder))
  dilemmas: list[Dilemma] = []
  for p in finals:
    dilemmas.extend(read_cvoice_activation(p, tax, strict))
  if test.is_file():
    dilemmas.extend(read_cvoice_eval(test, tax, strict))
  # The authors' files cannot be fixed here, so an overlap between their splits only warns.
  _check_split_leak(dilemmas, [d.id for d in dilemmas], lambda d: [d.zh.context], "context", strict=False)
  return Dataset(tax, str(folder), dilemmas=tuple(dilemmas))
