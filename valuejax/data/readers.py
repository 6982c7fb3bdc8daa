"""Schema-checked readers for taxonomy files and JSONL item files, for shipped and user frameworks.

Bad input raises ValueJaxError naming file:line and field; near-duplicate texts only warn.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from valuejax.data.schema import (
    SPLITS, Aspect, Dataset, Dilemma, DilemmaText, Dimension, FrozenMap, Portrait, Situation,
    Taxonomy, Value, ValueDescription)
from valuejax.errors import ValueJaxError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$")

# Item file names looked for beside taxonomy.json when the taxonomy has no "files" entry.
DEFAULT_FILES: dict[str, tuple[str, ...]] = {
    "descriptions": ("value_descriptions.jsonl", "descriptions.jsonl"),
    "situations": ("situations.jsonl",),
    "portraits": ("pvq_portraits.jsonl", "portraits.jsonl"),
    "dilemmas": ("dilemmas.jsonl",),
}
NEAR_DUPLICATE_JACCARD = 0.9
# A text field longer than this is a broken file (lines run together), not an item: no model here reads it.
MAX_TEXT_CHARS = 100_000


class NearDuplicateWarning(UserWarning):
  """Two items whose texts are nearly the same: legal, but they add little and may leak across splits."""


class SplitLeakWarning(UserWarning):
  """A text found in both the locate and the eval split of data that valuejax cannot edit (a release)."""


# ---------------------------------------------------------------------------------------------------
# Locating the shipped data


def shipped_data_dir() -> Path:
  """The data/ folder: $VALUEJAX_DATA_DIR, else the source checkout, else <prefix>/share/valuejax/data."""
  candidates = []
  if os.environ.get("VALUEJAX_DATA_DIR"):
    candidates.append(Path(os.environ["VALUEJAX_DATA_DIR"]))
  candidates.append(Path(__file__).resolve().parents[2] / "data")
  for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, getattr(sys, "exec_prefix", sys.prefix)]):
    candidates.append(Path(prefix) / "share" / "valuejax" / "data")
  try:
    import site
    candidates.append(Path(site.getuserbase()) / "share" / "valuejax" / "data")
  except Exception:  # site can be stripped in embedded interpreters; the other candidates still apply
    pass
  for c in candidates:
    if (c / "templates").is_dir() or (c / "schwartz").is_dir():
      return c
  raise ValueJaxError(
      "the valuejax data folder was not found (looked in: " + ", ".join(map(str, candidates)) + ")",
      fix="install valuejax with its data files, or set VALUEJAX_DATA_DIR to the repository's data/ folder")


# ---------------------------------------------------------------------------------------------------
# Low-level reading


def read_text_utf8(path: str | os.PathLike) -> str:
  """File contents as text; non-UTF-8 bytes are reported with their line and byte offset."""
  path = Path(path)
  try:
    raw = path.read_bytes()
  except FileNotFoundError:
    raise ValueJaxError("file not found", str(path), "check the path") from None
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise ValueJaxError(
        f"bad encoding: byte 0x{raw[e.start]:02x} at offset {e.start} is not valid UTF-8",
        f"{path}:{line}", "save the file as UTF-8 (without a legacy code page such as GBK or cp1252)") from None
  return text.lstrip("\ufeff")  # editors on Windows add a BOM; it carries no content


def read_jsonl(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
  """(line number, object) for every non-blank line of a UTF-8 JSONL file."""
  text = read_text_utf8(path)
  out = []
  for n, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueJaxError(f"not valid JSON ({e.msg} at column {e.colno})", f"{path}:{n}",
                          "write one JSON object per line") from None
    if not isinstance(obj, dict):
      raise ValueJaxError(f"each line must be a JSON object, got {type(obj).__name__}", f"{path}:{n}")
    out.append((n, obj))
  return out


class _Fields:
  """Typed access to one JSON object's fields, with errors that name the field and where it is."""

  def __init__(self, obj: dict[str, Any], where: str, kind: str):
    self.obj, self.where, self.kind = obj, where, kind

  def fail(self, what: str, fix: str | None = None) -> ValueJaxError:
    return ValueJaxError(what, self.where, fix)

  def text(self, key: str, optional: bool = False, obj: dict[str, Any] | None = None,
           prefix: str = "") -> str | None:
    obj = self.obj if obj is None else obj
    name = prefix + key
    if key not in obj or obj[key] is None:
      if optional:
        return None
      raise self.fail(f"missing field '{name}' in {self.kind}", f"add a non-empty '{name}'")
    v = obj[key]
    if not isinstance(v, str):
      raise self.fail(f"field '{name}' must be a string, got {type(v).__name__}")
    if not v.strip():
      raise self.fail(f"field '{name}' is empty text", f"write the {name} or remove the item")
    if len(v) > MAX_TEXT_CHARS:
      raise self.fail(f"field '{name}' is {len(v):,} characters long; a text may have at most {MAX_TEXT_CHARS:,}",
                      "shorten it, or check that the line does not hold several items run together")
    return v.strip()

  def ident(self, key: str = "id", optional: bool = False) -> str | None:
    v = self.text(key, optional)
    if v is not None and not _ID.match(v):
      raise self.fail(f"field '{key}' = {v!r} is not a valid id (letters, digits, _ . - only)")
    return v

  def mapping(self, key: str, optional: bool = False) -> dict[str, Any] | None:
    if key not in self.obj or self.obj[key] is None:
      if optional:
        return None
      raise self.fail(f"missing field '{key}' in {self.kind}")
    v = self.obj[key]
    if not isinstance(v, dict):
      raise self.fail(f"field '{key}' must be an object, got {type(v).__name__}")
    return v

  def lang_texts(self, key: str, optional: bool = False) -> FrozenMap[str, str] | None:
    """A {lang: text} field; a bare string is read as English."""
    if key not in self.obj or self.obj[key] is None:
      if optional:
        return None
      raise self.fail(f"missing field '{key}' in {self.kind}")
    v = self.obj[key]
    if isinstance(v, str):
      v = {"en": v}
    if not isinstance(v, dict) or not v:
      raise self.fail(f"field '{key}' must be a string or a non-empty {{language: text}} object")
    out = {}
    for lang in v:
      if not _LANG.match(str(lang)):
        raise self.fail(f"field '{key}' has key {lang!r}, which is not a language code such as 'en' or 'zh'")
      out[lang] = self.text(lang, obj=v, prefix=f"{key}.")
    return FrozenMap(out)

  def split(self) -> str:
    v = self.text("split")
    if v not in SPLITS:
      raise self.fail(f"field 'split' = {v!r} is not one of {', '.join(SPLITS)}")
    return v

  def lang(self) -> str:
    v = self.text("lang", optional=True) or "en"
    if not _LANG.match(v):
      raise self.fail(f"field 'lang' = {v!r} is not a language code such as 'en' or 'zh'")
    return v

  def only(self, allowed: Iterable[str], extra_ok: Callable[[str, Any], bool] = lambda k, v: False):
    allowed = set(allowed)
    for k, v in self.obj.items():
      if k not in allowed and not extra_ok(k, v):
        raise self.fail(f"unknown field '{k}' in {self.kind} (allowed: {', '.join(sorted(allowed))})",
                        "fix the spelling or remove the field")


# ---------------------------------------------------------------------------------------------------
# Taxonomy


def read_taxonomy(path: str | os.PathLike) -> Taxonomy:
  """Reads and checks a taxonomy.json: values, and optionally bipolar dimensions of two aspects each."""
  path = Path(path)
  text = read_text_utf8(path)
  try:
    obj = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueJaxError(f"not valid JSON ({e.msg} at column {e.colno})", f"{path}:{e.lineno}") from None
  if not isinstance(obj, dict):
    raise ValueJaxError("the taxonomy must be a JSON object", f"{path}:1")
  lines = text.splitlines()

  def where_of(ident: str | None) -> str:
    # JSON has no line numbers once parsed; finding the id's line keeps errors pointing somewhere useful.
    if ident:
      needle = json.dumps(ident, ensure_ascii=False)
      for n, line in enumerate(lines, 1):
        if needle in line:
          return f"{path}:{n}"
    return f"{path}:1"

  top = _Fields(obj, f"{path}:1", "taxonomy")
  top.only(("framework", "name", "description", "values", "dimensions", "files", "licence", "license",
            "source", "notes"))
  framework = top.ident("framework")
  name = top.text("name", optional=True) or framework
  raw_values = obj.get("values")
  if not isinstance(raw_values, list) or not raw_values:
    raise top.fail("field 'values' must be a non-empty list of value objects")

  values: list[Value] = []
  seen: dict[str, str] = {}
  for i, rv in enumerate(raw_values):
    ident = rv.get("id") if isinstance(rv, dict) else None
    where = where_of(ident)
    if not isinstance(rv, dict):
      raise ValueJaxError(f"values[{i}] must be an object", where)
    f = _Fields(rv, where, f"values[{i}]")
    f.only(("id", "name", "definition", "names", "definitions", "anti_value", "notes"),
           lambda k, v: bool(_LANG.match(k)) or bool(_LANG.match(k[len("definition_"):]))
           and k.startswith("definition_"))
    vid = f.ident("id")
    if vid in seen:
      raise f.fail(f"duplicate id '{vid}' (first at {seen[vid]})")
    seen[vid] = where
    names = dict(f.lang_texts("names", optional=True) or {})
    definitions = dict(f.lang_texts("definitions", optional=True) or {})
    for k in rv:
      if k == "id":
        continue
      if _LANG.match(k):
        names[k] = f.text(k)
      elif k.startswith("definition_"):
        definitions[k[len("definition_"):]] = f.text(k)
    label = f.text("name", optional=True) or names.get("en") or next(iter(names.values()), None)
    if label is None:
      raise f.fail(f"missing field 'name' in values[{i}] (or a per-language name such as 'en')")
    names.setdefault("en", label)
    definition = f.text("definition", optional=True)
    if definition is not None:
      definitions.setdefault("en", definition)
    definition = definition or definitions.get("en") or next(iter(definitions.values()), "")
    values.append(Value(vid, label, definition, FrozenMap(names), FrozenMap(definitions),
                        f.lang_texts("anti_value", optional=True)))

  dimensions: list[Dimension] = []
  aspect_where: dict[str, str] = {}
  raw_dims = obj.get("dimensions") or []
  if not isinstance(raw_dims, list):
    raise top.fail("field 'dimensions' must be a list")
  for i, rd in enumerate(raw_dims):
    where = where_of(rd.get("id") if isinstance(rd, dict) else None)
    if not isinstance(rd, dict):
      raise ValueJaxError(f"dimensions[{i}] must be an object", where)
    f = _Fields(rd, where, f"dimensions[{i}]")
    f.only(("id", "name", "definition", "aspects", "notes"))
    did = f.ident("id")
    if did in seen or any(d.id == did for d in dimensions):
      raise f.fail(f"duplicate id '{did}'")
    raw_aspects = rd.get("aspects")
    if not isinstance(raw_aspects, list) or len(raw_aspects) != 2:
      raise f.fail(f"dimension '{did}' must have exactly two opposing 'aspects'",
                   "list the two poles of the dimension; a value without an opposite needs no dimension")
    aspects = []
    for j, ra in enumerate(raw_aspects):
      awhere = where_of(ra.get("id") if isinstance(ra, dict) else None)
      if not isinstance(ra, dict):
        raise ValueJaxError(f"dimensions[{i}].aspects[{j}] must be an object", awhere)
      fa = _Fields(ra, awhere, f"aspect of '{did}'")
      fa.only(("id", "name", "definition", "values", "notes"))
      aid = fa.ident("id")
      if aid in aspect_where:
        raise fa.fail(f"duplicate aspect id '{aid}' (first at {aspect_where[aid]})")
      aspect_where[aid] = awhere
      members = ra.get("values")
      if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise fa.fail(f"field 'values' of aspect '{aid}' must be a non-empty list of value ids")
      for m in members:
        if m not in seen:
          raise fa.fail(f"unknown value label '{m}' in aspect '{aid}' (known: {', '.join(seen)})")
      aspects.append(Aspect(aid, fa.text("name", optional=True) or aid,
                            fa.text("definition", optional=True) or "", tuple(members), did))
    shared = set(aspects[0].values) & set(aspects[1].values)
    if shared:
      raise f.fail(f"value(s) {sorted(shared)} sit on both poles of dimension '{did}'",
                   "a value can belong to only one side of an opposing pair")
    dimensions.append(Dimension(did, f.text("name", optional=True) or did,
                                f.text("definition", optional=True) or "", (aspects[0], aspects[1])))
  for did in (d.id for d in dimensions):
    if did in aspect_where:
      raise ValueJaxError(f"id '{did}' is used both as a dimension and as an aspect", where_of(did))

  files = obj.get("files") or {}
  if not isinstance(files, dict) or not all(k in DEFAULT_FILES and isinstance(v, str) for k, v in files.items()):
    raise top.fail(f"field 'files' must map item kinds ({', '.join(DEFAULT_FILES)}) to file names")
  return Taxonomy(framework, name, tuple(values), tuple(dimensions), str(path), FrozenMap(files))


# ---------------------------------------------------------------------------------------------------
# Items


def _check_ids(items: Sequence[tuple[str, str]], seen: dict[str, str]) -> None:
  for ident, where in items:
    if ident in seen:
      raise ValueJaxError(f"duplicate id '{ident}' (first at {seen[ident]})", where,
                          "give every item a unique, stable id")
    seen[ident] = where


def _parse_description(f: _Fields, tax: Taxonomy) -> ValueDescription:
  f.only(("id", "aspect", "value", "text", "lang", "notes"))
  keys = [k for k in ("aspect", "value") if k in f.obj]
  if len(keys) != 1:
    raise f.fail("a value description needs exactly one of the fields 'aspect' or 'value'")
  label = f.text(keys[0])
  groups = tax.description_groups()
  if label not in groups:
    raise f.fail(f"unknown value label '{label}' in field '{keys[0]}'",
                 f"use one of: {', '.join(groups)}")
  return ValueDescription(f.ident(), label, f.text("text"), f.lang())


def _parse_situation(f: _Fields, tax: Taxonomy) -> Situation:
  f.only(("id", "dimension", "split", "situation", "question", "actions", "lang", "notes"))
  ident = f.ident()
  dim_id = f.text("dimension")
  if dim_id not in {d.id for d in tax.dimensions}:
    raise f.fail(f"unknown dimension '{dim_id}' in field 'dimension'",
                 f"use one of: {', '.join(d.id for d in tax.dimensions) or '(the taxonomy has none)'}")
  question = f.text("question")
  if not question.endswith(("?", "？")):
    raise f.fail("field 'question' must be a question ending with '?'")
  acts = f.mapping("actions")
  keys = list(acts)
  poles = ", ".join(a.id for a in tax.dimension(dim_id).aspects)
  for k in keys:
    if k not in tax.aspect_ids:
      raise f.fail(f"unknown value label '{k}' in field 'actions'",
                   f"key the actions by the aspects of '{dim_id}': {poles}")
  if len(keys) != 2 or not tax.is_opposing_pair(keys[0], keys[1]):
    raise f.fail(f"field 'actions' is keyed by {keys}, which is not an opposing pair of aspects",
                 "give exactly two actions, one per pole of the situation's dimension")
  want = tuple(a.id for a in tax.dimension(dim_id).aspects)
  if set(keys) != set(want):
    raise f.fail(f"field 'actions' is keyed by {keys}, but dimension '{dim_id}' opposes {list(want)}")
  actions = {a: f.text(a, obj=acts, prefix="actions.") for a in want}
  return Situation(ident, dim_id, f.split(), f.text("situation"), question, FrozenMap(actions), f.lang())


def _parse_portrait(f: _Fields, tax: Taxonomy) -> Portrait:
  f.only(("id", "value", "text", "lang", "notes"))
  ident = f.ident()
  value = f.text("value")
  if value not in tax.value_ids:
    raise f.fail(f"unknown value label '{value}' in field 'value'", f"use one of: {', '.join(tax.value_ids)}")
  return Portrait(ident, value, f.text("text"), f.lang())


_DILEMMA_META = ("id", "value", "split", "anti_value", "conflict_type", "notes")


def _parse_dilemma(f: _Fields, tax: Taxonomy) -> Dilemma:
  f.only(_DILEMMA_META, lambda k, v: bool(_LANG.match(k)))
  ident = f.ident()
  value = f.text("value")
  if value not in tax.value_ids:
    raise f.fail(f"unknown value label '{value}' in field 'value'", f"use one of: {', '.join(tax.value_ids)}")
  anti = f.lang_texts("anti_value")
  texts = {}
  for lang, block in f.obj.items():
    if lang in _DILEMMA_META:
      continue
    if not isinstance(block, dict):
      raise f.fail(f"field '{lang}' must be an object with context, aligned and violating")
    sub = _Fields(block, f.where, f"dilemma '{lang}' block")
    sub.only(("context", "aligned", "violating"))
    texts[lang] = DilemmaText(*(f.text(k, obj=block, prefix=f"{lang}.") for k in
                                ("context", "aligned", "violating")))
    if texts[lang].aligned == texts[lang].violating:
      raise f.fail(f"fields '{lang}.aligned' and '{lang}.violating' are the same text")
    if lang not in anti:
      raise f.fail(f"field 'anti_value' has no '{lang}' text, but the dilemma is written in '{lang}'")
  if not texts:
    raise f.fail("a dilemma needs at least one language block, e.g. \"zh\": {context, aligned, violating}")
  return Dilemma(ident, value, f.split(), anti, FrozenMap(texts), f.text("conflict_type", optional=True))


_PARSERS = {"descriptions": _parse_description, "situations": _parse_situation,
            "portraits": _parse_portrait, "dilemmas": _parse_dilemma}
_KIND_NAMES = {"descriptions": "value description", "situations": "situation", "portraits": "portrait",
               "dilemmas": "dilemma"}


def read_items(path: str | os.PathLike, kind: str, taxonomy: Taxonomy,
               seen_ids: dict[str, str] | None = None) -> tuple[Any, ...]:
  """Reads one JSONL item file of a kind ('descriptions', 'situations', 'portraits', 'dilemmas')."""
  if kind not in _PARSERS:
    raise ValueJaxError(f"unknown item kind '{kind}'", fix=f"use one of: {', '.join(_PARSERS)}")
  rows = read_jsonl(path)
  items, wheres = [], []
  for n, obj in rows:
    where = f"{path}:{n}"
    items.append(_PARSERS[kind](_Fields(obj, where, _KIND_NAMES[kind]), taxonomy))
    wheres.append(where)
  _check_ids([(it.id, w) for it, w in zip(items, wheres)], {} if seen_ids is None else seen_ids)
  if kind == "situations" and taxonomy.dimensions and items:
    _check_split_leak(items, wheres, lambda s: [s.situation], "situation")
  if kind == "dilemmas" and items:
    _check_split_leak(items, wheres, lambda d: [t.context for t in d.texts.values()], "context")
  _warn_near_duplicates(items, wheres, kind)
  return tuple(items)


# ---------------------------------------------------------------------------------------------------
# Near-duplicates and split leakage


def normalize_text(text: str) -> str:
  """Case, punctuation and spacing removed, so trivially re-typed copies compare equal."""
  return " ".join(_tokens(text))


def _tokens(text: str) -> list[str]:
  text = text.lower()
  words = re.findall(r"[a-z0-9']+", text)
  # Chinese has no spaces; character bigrams play the role of words for overlap.
  cjk = re.findall(r"[\u3400-\u9fff]", text)
  return words + [a + b for a, b in zip(cjk, cjk[1:])] + (cjk if len(cjk) == 1 else [])


def jaccard(a: set[str], b: set[str]) -> float:
  return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicate_pairs(texts: Sequence[str], threshold: float = NEAR_DUPLICATE_JACCARD
                         ) -> list[tuple[int, int, float]]:
  """Index pairs whose token sets overlap at Jaccard >= threshold (sorted by size to prune)."""
  sets = [set(_tokens(t)) for t in texts]
  order = sorted(range(len(sets)), key=lambda i: len(sets[i]))
  out = []
  for x, i in enumerate(order):
    for j in order[x + 1:]:
      # Jaccard <= |small| / |large|, so once sizes differ too much no later set can match.
      if len(sets[j]) and len(sets[i]) < threshold * len(sets[j]):
        break
      s = jaccard(sets[i], sets[j])
      if s >= threshold:
        out.append((min(i, j), max(i, j), s))
  return sorted(out)


def _texts_of(item: Any) -> list[tuple[str, str]]:
  if isinstance(item, Situation):
    return [("situation", item.situation)]
  if isinstance(item, Dilemma):
    return [(f"{lang}.context", t.context) for lang, t in item.texts.items()]
  return [("text", item.text)]


def _warn_near_duplicates(items: Sequence[Any], wheres: Sequence[str], kind: str, released: bool = False) -> None:
  """Warns of each near-duplicate pair; in `released` data (files nobody here can edit) it says what was
  found and that both are kept, rather than asking for a rewrite."""
  fields = sorted({name for it in items for name, _ in _texts_of(it)})
  for name in fields:
    idx = [(k, text) for k, it in enumerate(items) for fname, text in _texts_of(it) if fname == name]
    for a, b, s in near_duplicate_pairs([t for _, t in idx]):
      i, j = idx[a][0], idx[b][0]
      warnings.warn(
          f"{wheres[j]}: near-duplicate {name} of {wheres[i]} (token overlap {s:.2f}): "
          f"'{items[i].id}' and '{items[j].id}'; "
          + ("both are in the released files and both are kept" if released else "rewrite one so they differ"),
          NearDuplicateWarning, stacklevel=3)


def _check_split_leak(items: Sequence[Any], wheres: Sequence[str],
                      texts: Callable[[Any], list[str]], field: str, strict: bool = True) -> None:
  first: dict[str, tuple[str, int]] = {}
  for k, it in enumerate(items):
    for t in texts(it):
      key = normalize_text(t)
      if key in first and items[first[key][1]].split != it.split:
        other = items[first[key][1]]
        what = (f"the same {field} is in split '{other.split}' ('{other.id}', {wheres[first[key][1]]}) "
                f"and split '{it.split}' ('{it.id}')")
        if not strict:
          warnings.warn(f"{wheres[k]}: {what}", SplitLeakWarning, stacklevel=3)
          continue
        raise ValueJaxError(
            what, wheres[k], "held-out eval items must not share a text with locate items; move or rewrite one")
      first.setdefault(key, (it.split, k))


# ---------------------------------------------------------------------------------------------------
# Whole frameworks


def _item_path(folder: Path, tax: Taxonomy, kind: str) -> Path | None:
  if kind in tax.files:
    p = folder / tax.files[kind]
    if not p.is_file():
      raise ValueJaxError(f"the taxonomy lists '{tax.files[kind]}' for {kind}, but it does not exist",
                          tax.source, "create the file or remove it from 'files'")
    return p
  for name in DEFAULT_FILES[kind]:
    if (folder / name).is_file():
      return folder / name
  return None


def load_framework(folder: str | os.PathLike) -> Dataset:
  """A framework folder (taxonomy.json + item files) as a Dataset; a bare name means shipped data."""
  folder = Path(folder)
  if not folder.exists() and len(folder.parts) == 1:
    shipped = sorted(p.name for p in shipped_data_dir().iterdir() if (p / "taxonomy.json").is_file())
    if str(folder) not in shipped:
      raise ValueJaxError(f"unknown framework {str(folder)!r}: not a shipped framework and no such folder",
                          "data.framework", f"use one of {', '.join(shipped)}, or the path of a framework folder")
    folder = shipped_data_dir() / folder
  tax_path = folder / "taxonomy.json"
  if not tax_path.is_file():
    raise ValueJaxError("no taxonomy.json in the framework folder", str(folder),
                        "a framework folder holds taxonomy.json plus its JSONL item files")
  tax = read_taxonomy(tax_path)
  seen: dict[str, str] = {}
  loaded = {}
  for kind in DEFAULT_FILES:
    p = _item_path(folder, tax, kind)
    loaded[kind] = read_items(p, kind, tax, seen) if p is not None else ()
  return Dataset(tax, str(folder), **loaded)


def load_shipped(name: str) -> Dataset:
  """One of the frameworks shipped with valuejax: 'schwartz' or 'cvoice'."""
  return load_framework(shipped_data_dir() / name)
