"""Tests for the data layer: shipped files validate and meet their counts, bad input is reported precisely.

Also: released C-voice workbooks, a user-defined framework with no code change, and prompt templates.
"""

import collections
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.helpers import write_workbook
from valuejax.data import (
    NearDuplicateWarning, choice_protocol_prompts, cvoice_prompts, forced_choice_prompts, likert_prompts,
    load_framework, load_templates, normalize_text, open_question_prompts,
    read_cvoice_activation, read_cvoice_eval, read_cvoice_release, read_template, shipped_data_dir,
    valuelocate_prompts)
from valuejax.data.schema import REVERSED_SUFFIX
from valuejax.errors import ValueJaxError

DATA = shipped_data_dir()
SCHWARTZ_ASPECTS = ("openness_to_change", "conservation", "self_enhancement", "self_transcendence")
CVOICE_ZH = {"prosperity": "富强", "democracy": "民主", "civility": "文明", "harmony": "和谐", "freedom": "自由",
             "equality": "平等", "justice": "公正", "rule_of_law": "法治", "patriotism": "爱国",
             "dedication": "敬业", "integrity": "诚信", "friendliness": "友善"}


def _jsonl(path: Path, rows) -> Path:
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
  return path


@pytest.fixture(scope="module")
def schwartz():
  with warnings.catch_warnings():
    warnings.simplefilter("error", NearDuplicateWarning)  # shipped data must be free of near-duplicates
    return load_framework(DATA / "schwartz")


# ---------------------------------------------------------------------------------------------------
# Shipped Schwartz data


@pytest.mark.subprocess
def test_data_layer_imports_without_jax():
  code = "import sys, valuejax.data; sys.exit(1 if 'jax' in sys.modules else 0)"
  assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0


def test_schwartz_taxonomy_is_two_bipolar_dimensions_of_four_aspects(schwartz):
  tax = schwartz.taxonomy
  assert tax.framework == "schwartz" and len(tax.values) == 10
  assert set(tax.aspect_ids) == set(SCHWARTZ_ASPECTS)
  assert tax.opposite("openness_to_change") == "conservation"
  assert tax.opposite("self_transcendence") == "self_enhancement"
  assert not tax.is_opposing_pair("conservation", "self_enhancement")
  members = [v for a in tax.aspects for v in a.values]
  assert sorted(members) == sorted(tax.value_ids)  # every value on exactly one pole (hedonism included)


def test_schwartz_description_counts(schwartz):
  counts = collections.Counter(d.group for d in schwartz.descriptions)
  for aspect in SCHWARTZ_ASPECTS:
    assert counts[aspect] >= 40 and counts[aspect + REVERSED_SUFFIX] >= 40, counts
  texts = [normalize_text(d.text) for d in schwartz.descriptions]
  assert len(set(texts)) == len(texts)
  assert all(re.search(r"\b(I|I'm|I'd|I've|my|me|mine)\b", d.text, re.IGNORECASE) for d in schwartz.descriptions)


def test_schwartz_situations_counts_and_actions(schwartz):
  per_dim = collections.Counter(s.dimension for s in schwartz.situations)
  assert set(per_dim) == {d.id for d in schwartz.taxonomy.dimensions}
  assert all(n >= 120 for n in per_dim.values()), per_dim
  for s in schwartz.situations:
    assert s.question.endswith("?")
    (a, ta), (b, tb) = s.actions.items()
    assert schwartz.taxonomy.is_opposing_pair(a, b) and ta != tb


def test_schwartz_locate_eval_split_is_disjoint(schwartz):
  by_split = {sp: [s for s in schwartz.situations if s.split == sp] for sp in ("locate", "eval")}
  ids = [{s.id for s in v} for v in by_split.values()]
  texts = [{normalize_text(s.situation) for s in v} for v in by_split.values()]
  assert not ids[0] & ids[1] and not texts[0] & texts[1]
  for dim in schwartz.taxonomy.dimensions:
    n_eval = sum(s.dimension == dim.id for s in by_split["eval"])
    n_all = sum(s.dimension == dim.id for s in schwartz.situations)
    assert 0.25 <= n_eval / n_all <= 0.4


def test_schwartz_portraits(schwartz):
  counts = collections.Counter(p.value for p in schwartz.portraits)
  assert set(counts) == set(schwartz.taxonomy.value_ids) and min(counts.values()) >= 4
  for p in schwartz.portraits:
    assert not re.search(r"\b(he|she|him|her|his|hers|himself|herself)\b", p.text, re.IGNORECASE), p.id


# ---------------------------------------------------------------------------------------------------
# C-voice: shipped files (whatever is there) and a fixture copy of the format


def _cvoice_fixture(folder: Path) -> Path:
  """A two-value C-voice framework in the shipped format, so the format is tested even before data exists."""
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "taxonomy.json").write_text(json.dumps({"framework": "cvoice", "values": [
      {"id": "justice", "zh": "公正", "en": "Justice", "definition_zh": "一碗水端平。",
       "definition_en": "Even-handedness.", "anti_value": {"zh": "偏袒", "en": "favoritism"}},
      {"id": "integrity", "zh": "诚信", "en": "Integrity", "definition_zh": "说到做到。",
       "definition_en": "Keeping one's word.", "anti_value": {"zh": "失信", "en": "bad faith"}}]},
      ensure_ascii=False), encoding="utf-8")
  _jsonl(folder / "dilemmas.jsonl", [
      {"id": "cv-justice-001", "value": "justice", "split": "locate",
       "anti_value": {"zh": "偏袒", "en": "favoritism"},
       "zh": {"context": "你是班长，好朋友和另一位同学同时申请奖学金。", "aligned": "按成绩公开评定。",
              "violating": "暗中帮好朋友拿到名额。"},
       "en": {"context": "You are class monitor; your best friend and a classmate both apply for a grant.",
              "aligned": "I rank them openly by their marks.", "violating": "I quietly help my friend win."}},
      {"id": "cv-integrity-001", "value": "integrity", "split": "eval",
       "anti_value": {"zh": "失信", "en": "bad faith"},
       "zh": {"context": "你答应周末帮邻居搬家，却临时收到朋友出游的邀请。", "aligned": "按约定去帮邻居搬家。",
              "violating": "找个借口推掉搬家，去和朋友出游。"},
       "en": {"context": "You promised to help a neighbour move at the weekend, then friends invite you on a trip.",
              "aligned": "I keep my word and help the neighbour move.",
              "violating": "I make an excuse and go on the trip."}}])
  return folder


def test_cvoice_fixture_format_loads(tmp_path):
  data = load_framework(_cvoice_fixture(tmp_path / "cvoice"))
  d = data.dilemmas[0]
  assert d.zh.aligned == "按成绩公开评定。" and d.en.violating == "I quietly help my friend win."
  assert d.anti_value["en"] == "favoritism" and data.split("eval").dilemmas[0].id == "cv-integrity-001"


def test_shipped_cvoice_validates():
  folder = DATA / "cvoice"
  if not (folder / "taxonomy.json").is_file():
    pytest.skip("data/cvoice/taxonomy.json not written yet; the format is covered by the fixture test")
  with warnings.catch_warnings():
    warnings.simplefilter("error", NearDuplicateWarning)
    data = load_framework(folder)
  tax = data.taxonomy
  assert {v.id: v.label("zh") for v in tax.values} == CVOICE_ZH
  assert all(v.anti_value and {"zh", "en"} <= set(v.anti_value) for v in tax.values)
  if (folder / "dilemmas.jsonl").is_file():
    counts = collections.Counter(d.value for d in data.dilemmas)
    assert set(counts) == set(CVOICE_ZH) and min(counts.values()) >= 20, counts
    assert all(d.zh is not None and d.en is not None for d in data.dilemmas)
    splits = {sp: {normalize_text(d.zh.context) for d in data.dilemmas if d.split == sp}
              for sp in ("locate", "eval")}
    assert splits["eval"] and not splits["locate"] & splits["eval"]


# ---------------------------------------------------------------------------------------------------
# Bad input: every problem names the file, the line and the field


@pytest.fixture
def mft(tmp_path):
  """A tiny Moral Foundations framework written by a user: no code, only files."""
  folder = tmp_path / "mft"
  folder.mkdir()
  (folder / "taxonomy.json").write_text(json.dumps({
      "framework": "moral_foundations", "name": "Moral Foundations (two foundations)",
      "values": [{"id": "care", "name": "Care"}, {"id": "harm", "name": "Harm"},
                 {"id": "fairness", "name": "Fairness"}, {"id": "cheating", "name": "Cheating"}],
      "dimensions": [
          {"id": "care_vs_harm", "aspects": [{"id": "caring", "values": ["care"]},
                                             {"id": "harming", "values": ["harm"]}]},
          {"id": "fairness_vs_cheating", "aspects": [{"id": "fair", "values": ["fairness"]},
                                                     {"id": "cheat", "values": ["cheating"]}]}]}, indent=1))
  _jsonl(folder / "descriptions.jsonl", [
      {"id": "d1", "aspect": "caring", "text": "I cannot walk past someone who is hurting."},
      {"id": "d2", "aspect": "caring_reversed", "text": "Other people's pain leaves me cold."},
      {"id": "d3", "aspect": "fair", "text": "Everyone should get the same share for the same work."},
      {"id": "d4", "value": "cheating", "text": "Bending the rules is fine as long as I win."}])
  _jsonl(folder / "situations.jsonl", [
      {"id": "s1", "dimension": "care_vs_harm", "split": "locate", "situation": "A stray dog limps by.",
       "question": "What do you do?", "actions": {"caring": "I take it to a vet.", "harming": "I chase it off."}},
      {"id": "s2", "dimension": "care_vs_harm", "split": "eval", "situation": "A colleague is crying.",
       "question": "What do you do?", "actions": {"harming": "I mock them.", "caring": "I ask what's wrong."}},
      {"id": "s3", "dimension": "fairness_vs_cheating", "split": "locate",
       "situation": "You can see the exam answers.", "question": "Do you look?",
       "actions": {"fair": "I look away.", "cheat": "I copy them."}}])
  _jsonl(folder / "portraits.jsonl", [
      {"id": "p1", "value": "care", "text": "It is important to this person to comfort those who suffer."}])
  return folder


def test_user_framework_loads_without_code(mft):
  data = load_framework(mft)
  assert data.taxonomy.framework == "moral_foundations" and len(data.situations) == 3
  assert data.taxonomy.opposite("caring") == "harming"
  assert data.descriptions[3].group == "cheating" and data.descriptions[1].reversed
  prompts = valuelocate_prompts(data, questions_per_description=0)
  caring = [p for p in prompts if p.group == "caring"]
  assert [p.meta["situation_id"] for p in caring] == ["s1"]  # only its own dimension, only 'locate'
  assert {p.group for p in prompts} == {"caring", "caring_reversed", "fair", "cheating"}
  fc = forced_choice_prompts(data.situations, taxonomy=data.taxonomy, balance=False)
  assert fc[1].meta["labels"] == ("caring", "harming")  # taxonomy order, whatever the file order


def _rewrite(folder: Path, name: str, lineno: int, change) -> None:
  path = folder / name
  lines = path.read_text(encoding="utf-8").splitlines()
  obj = json.loads(lines[lineno - 1])
  change(obj)
  lines[lineno - 1] = json.dumps(obj, ensure_ascii=False)
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("name,lineno,change,pattern", [
    ("descriptions.jsonl", 2, lambda o: o.pop("text"), r"descriptions\.jsonl:2: missing field 'text'"),
    ("descriptions.jsonl", 3, lambda o: o.update(text="   "), r"descriptions\.jsonl:3: field 'text' is empty"),
    ("descriptions.jsonl", 4, lambda o: o.update(id="d1"),
     r"descriptions\.jsonl:4: duplicate id 'd1' \(first at .*descriptions\.jsonl:1\)"),
    ("descriptions.jsonl", 1, lambda o: o.update(aspect="kindness"),
     r"descriptions\.jsonl:1: unknown value label 'kindness' in field 'aspect'"),
    ("situations.jsonl", 1, lambda o: o.update(actions={"caring": "x", "fair": "y"}),
     r"situations\.jsonl:1: field 'actions' is keyed by \['caring', 'fair'\], which is not an opposing pair"),
    ("situations.jsonl", 3, lambda o: o.update(actions={"caring": "x", "harming": "y"}),
     r"situations\.jsonl:3: .*dimension 'fairness_vs_cheating' opposes"),
    ("situations.jsonl", 2, lambda o: o["actions"].update(caring=""),
     r"situations\.jsonl:2: field 'actions\.caring' is empty"),
    ("situations.jsonl", 2, lambda o: o.update(split="test"), r"situations\.jsonl:2: field 'split' = 'test'"),
    ("situations.jsonl", 2, lambda o: o.update(situation="A stray dog limps by!"),
     r"situations\.jsonl:2: the same situation is in split 'locate' \('s1'"),
    ("situations.jsonl", 1, lambda o: o.update(question="Tell me what you do."),
     r"situations\.jsonl:1: field 'question' must be a question"),
    ("portraits.jsonl", 1, lambda o: o.update(value="caring"),
     r"portraits\.jsonl:1: unknown value label 'caring' in field 'value'"),
    ("situations.jsonl", 1, lambda o: o.update(dimnesion="x"), r"situations\.jsonl:1: unknown field 'dimnesion'"),
])
def test_bad_items_name_file_line_and_field(mft, name, lineno, change, pattern):
  _rewrite(mft, name, lineno, change)
  with pytest.raises(ValueJaxError, match=pattern):
    load_framework(mft)


def test_duplicate_id_across_files(mft):
  _rewrite(mft, "portraits.jsonl", 1, lambda o: o.update(id="s2"))
  with pytest.raises(ValueJaxError, match=r"portraits\.jsonl:1: duplicate id 's2' \(first at .*situations"):
    load_framework(mft)


def test_bad_encoding_names_the_line(mft):
  path = mft / "descriptions.jsonl"
  lines = path.read_bytes().splitlines(keepends=True)
  lines[2] = '{"id": "d3", "aspect": "fair", "text": "Caf\u00e9 rules"}\n'.encode("cp1252")
  path.write_bytes(b"".join(lines))
  with pytest.raises(ValueJaxError, match=r"descriptions\.jsonl:3: bad encoding.*not valid UTF-8"):
    load_framework(mft)


def test_bad_json_names_the_line(mft):
  with open(mft / "portraits.jsonl", "a", encoding="utf-8") as f:
    f.write('{"id": "p2", "value": "care",\n')
  with pytest.raises(ValueJaxError, match=r"portraits\.jsonl:2: not valid JSON"):
    load_framework(mft)


@pytest.mark.parametrize("change,pattern", [
    (lambda t: t["dimensions"][0]["aspects"].pop(), r"must have exactly two opposing 'aspects'"),
    (lambda t: t["dimensions"][0]["aspects"][0].update(values=["kindness"]), r"unknown value label 'kindness'"),
    (lambda t: t["values"].append({"id": "care", "name": "Care again"}), r"duplicate id 'care'"),
    (lambda t: t["values"][0].pop("name"), r"missing field 'name'"),
    (lambda t: t["dimensions"][1]["aspects"][1].update(values=["fairness"]), r"sit on both poles"),
])
def test_bad_taxonomy(mft, change, pattern):
  tax = json.loads((mft / "taxonomy.json").read_text())
  change(tax)
  (mft / "taxonomy.json").write_text(json.dumps(tax, indent=1))
  with pytest.raises(ValueJaxError, match=r"taxonomy\.json:\d+: .*" + pattern):
    load_framework(mft)


def test_near_duplicates_warn_not_fail(mft):
  _rewrite(mft, "descriptions.jsonl", 3,
           lambda o: o.update(text="Everyone should get the same share for the same work!"))
  _rewrite(mft, "descriptions.jsonl", 1,
           lambda o: o.update(text="everyone should get the SAME share, for the same work"))
  with pytest.warns(NearDuplicateWarning, match=r"descriptions\.jsonl:3: near-duplicate text of .*:1.*'d1' and 'd3'"):
    data = load_framework(mft)
  assert len(data.descriptions) == 4


# ---------------------------------------------------------------------------------------------------
# Released C-voice workbooks


@pytest.fixture
def cvoice_tax(tmp_path):
  return load_framework(_cvoice_fixture(tmp_path / "tax")).taxonomy


def test_cvoice_activationwrite_workbook(tmp_path, cvoice_tax):
  path = write_workbook(tmp_path / "公正-final.xlsx", {"Sheet1": [
      [None, "冲突类型", "决策困境", "选择A", "选择B"],  # a leading index column, as pandas exports write it
      [0, "公正 vs 偏袒", "你负责评选先进员工，表弟也在候选名单里。", "按业绩评选。", "把名额给表弟。"],
      [None, None, None, None, None],
      [2, "公正vs徇私", "朋友违章停车被你看到，你是执勤人员。", "照章开罚单。", "看在交情上放他一马。"]]})
  dilemmas = read_cvoice_activation(path, cvoice_tax)
  assert [d.id for d in dilemmas] == ["cvoice-final-justice-0002", "cvoice-final-justice-0004"]
  assert dilemmas[1].anti_value["zh"] == "徇私" and dilemmas[0].zh.aligned == "按业绩评选。"
  assert all(d.en is None and d.split == "locate" and d.value == "justice" for d in dilemmas)


def test_cvoice_eval_workbook_and_release_folder(tmp_path, cvoice_tax):
  write_workbook(tmp_path / "test-zh-200.xlsx", {
      "诚信": [["Type", "Context", "Action1", "Action2"],
               ["诚信 vs 失信", "你答应帮同事代班，却临时想去看演唱会。", "按约定代班。", "临时爽约。"]],
      "justice": [["Type", "Context", "Action1", "Action2"],
                  ["偏袒", "你是裁判，一方是你的老同学。", "公正判罚。", "暗中偏向老同学。"]]})
  write_workbook(tmp_path / "justice-final.xlsx", {"S": [
      ["冲突类型", "决策困境", "选择A", "选择B"],
      ["公正 vs 偏袒", "分配加班费时，组长想多给关系好的人。", "按工时分配。", "多给关系好的人。"]]})
  evals = read_cvoice_eval(tmp_path / "test-zh-200.xlsx", cvoice_tax)
  assert [(d.value, d.split) for d in evals] == [("integrity", "eval"), ("justice", "eval")]
  assert evals[0].anti_value["zh"] == "失信"
  assert evals[1].anti_value["zh"] == "偏袒"  # no "vs": the taxonomy's anti-value
  data = read_cvoice_release(tmp_path, cvoice_tax)
  assert len(data.dilemmas) == 3 and len(data.split("locate").dilemmas) == 1
  prompts = cvoice_prompts(data.dilemmas, cvoice_tax)
  assert {p.group for p in prompts} == {"justice-support", "justice-conflict", "integrity-support",
                                        "integrity-conflict"}
  with pytest.raises(ValueJaxError, match="no dilemma has a 'en' text"):
    cvoice_prompts(data.dilemmas, cvoice_tax, lang="en")


@pytest.mark.parametrize("name,sheets,reader,pattern", [
    ("公正-final.xlsx", {"S": [["冲突类型", "困境", "选择A", "选择B"], ["公正 vs 偏袒", "x", "a", "b"]]},
     read_cvoice_activation, r"公正-final\.xlsx:row 1: wrong columns: missing \['决策困境'\]"),
    ("仁爱-final.xlsx", {"S": [["冲突类型", "决策困境", "选择A", "选择B"]]},
     read_cvoice_activation, r"unknown value label '仁爱' in the workbook name"),
    ("公正-final.xlsx", {"S": [["冲突类型", "决策困境", "选择A", "选择B"], ["公正 偏袒", "x", "a", "b"]]},
     read_cvoice_activation, r"公正-final\.xlsx:row 2: conflict type '公正 偏袒' is not written 'value vs anti-value'"),
    ("公正-final.xlsx", {"S": [["冲突类型", "决策困境", "选择A", "选择B"], ["诚信 vs 失信", "x", "a", "b"]]},
     read_cvoice_activation, r"row 2: conflict type .* names value 'integrity', but this sheet is for 'justice'"),
    ("公正-final.xlsx", {"S": [["冲突类型", "决策困境", "选择A", "选择B"], ["公正 vs 偏袒", "x", "", "b"]]},
     read_cvoice_activation, r"row 2: empty text in column '选择A'"),
    ("test-zh-200.xlsx", {"公正": [["Type", "Context", "Choice1", "Choice2"]]},
     read_cvoice_eval, r"test-zh-200\.xlsx\[公正\]:row 1: wrong columns: missing \['Action1', 'Action2'\]"),
    ("test-zh-200.xlsx", {"仁爱": [["Type", "Context", "Action1", "Action2"]]},
     read_cvoice_eval, r"unknown value label '仁爱' in the sheet name"),
])
def test_cvoice_workbook_errors(tmp_path, cvoice_tax, name, sheets, reader, pattern):
  path = write_workbook(tmp_path / name, sheets)
  with pytest.raises(ValueJaxError, match=pattern):
    reader(path, cvoice_tax, strict=True)


def test_the_released_workbooks_load_as_released(tmp_path, cvoice_tax):
  """Empty required cells (skipped, one warning per sheet with the row numbers), an extra unnamed empty
  column, an extra named column: as in the authors' files."""
  from valuejax.data import SkippedRowsWarning
  write_workbook(tmp_path / "test-zh-200.xlsx", {
      "诚信": [["Type", "Context", "Action1", "Action2", None],
               ["诚信 vs 失信", "你答应帮同事代班，却临时想去看演唱会。", "按约定代班。", "临时爽约。", None],
               ["诚信 vs 失信", "考试时同桌想抄你的答案。", None, "让他抄。", None],
               ["诚信 vs 失信", "你捡到一个钱包。", "交给失主。", "", None]]})
  write_workbook(tmp_path / "justice-final.xlsx", {"S": [
      ["冲突类型", "判决困境", "决策困境", "选择A", "选择B"],
      ["公正 vs 偏袒", "额外的列", "分配加班费时，组长想多给关系好的人。", "按工时分配。", "多给关系好的人。"]]})
  with pytest.warns(SkippedRowsWarning, match=r"test-zh-200\.xlsx\[诚信\]: skipped 2 row\(s\).*rows 3, 4"):
    data = read_cvoice_release(tmp_path, cvoice_tax)
  assert sorted(d.id for d in data.dilemmas) == ["cvoice-final-justice-0002", "cvoice-test-integrity-0002"]
  with pytest.raises(ValueJaxError, match=r"\[诚信\]:row 3: empty text in column 'Action1'"):
    read_cvoice_release(tmp_path, cvoice_tax, strict=True)


def test_cvoice_not_awrite_workbook(tmp_path, cvoice_tax):
  (tmp_path / "公正-final.xlsx").write_text("not a zip")
  with pytest.raises(ValueJaxError, match=r"not a readable \.xlsx workbook"):
    read_cvoice_activation(tmp_path / "公正-final.xlsx", cvoice_tax)


# ---------------------------------------------------------------------------------------------------
# Templates and prompt builders


def test_shipped_templates_fill(schwartz):
  templates = load_templates()
  d, s = schwartz.descriptions[0], schwartz.split("locate").situations[0]
  text = templates["valuelocate_activation"].fill("en", description=d.text, situation=s.situation,
                                                 question=s.question)
  assert d.text in text and s.question in text and "{" not in text
  for name, tpl in templates.items():
    assert {"en", "zh"} <= set(tpl.texts), name
  assert "x%" in templates["choice_protocol"].text("en")
  assert "选项A：x% 选项B：y%" in templates["choice_protocol"].text("zh")
  with pytest.raises(ValueError, match="missing"):
    templates["forced_choice"].fill("en", situation="s", option_a="a")


def test_valuelocate_prompts_cover_every_group_and_own_dimension(schwartz):
  prompts = valuelocate_prompts(schwartz, questions_per_description=2)
  assert len(prompts) == 2 * len(schwartz.descriptions)
  assert {p.group for p in prompts} == set(schwartz.taxonomy.description_groups()) & {
      d.group for d in schwartz.descriptions}
  sits = {s.id: s for s in schwartz.situations}
  for p in prompts:
    s = sits[p.meta["situation_id"]]
    assert s.split == "locate" and p.meta["target"] in s.actions
  used = collections.Counter(p.meta["situation_id"] for p in prompts if p.group == "conservation")
  assert max(used.values()) - min(used.values()) <= 1  # round-robin: situations used evenly


def test_choice_and_likert_prompts(schwartz):
  evals = schwartz.split("eval").situations
  fc = forced_choice_prompts(evals, taxonomy=schwartz.taxonomy)
  swapped = [p.meta["swapped"] for p in fc]
  assert 0.3 < sum(swapped) / len(swapped) < 0.7  # position bias balanced across items
  for p, s in zip(fc, evals):
    a, b = p.meta["labels"]
    assert p.meta["continuations"] == (" " + s.actions[a], " " + s.actions[b])
    assert f"Option A: {s.actions[a]}" in p.text
  assert forced_choice_prompts(evals, taxonomy=schwartz.taxonomy) == fc  # deterministic
  cp = choice_protocol_prompts(evals[:3], lang="en", taxonomy=schwartz.taxonomy)
  assert all(p.text.rstrip().endswith("Answer:") and "Option A: x% Option B: y%" in p.text for p in cp)
  lk = likert_prompts(schwartz.portraits)
  assert lk[0].meta["letters"] == tuple("ABCDEF") and lk[0].meta["scores"] == (1, 2, 3, 4, 5, 6)
  assert "F. Very much like me" in lk[0].text and "A. Not like me at all" in lk[0].text
  oq = open_question_prompts(evals)
  assert len(oq) == len(evals) and evals[0].question in oq[0].text


@pytest.mark.parametrize("body,pattern", [
    ({"placeholders": ["situation", "question"], "text": {"en": "{situation} {question} {extra}"}},
     r"undocumented placeholder\(s\) \['extra'\]"),
    ({"placeholders": ["situation", "question"], "text": {"en": "{situation} only"}},
     r"never uses placeholder\(s\) \['question'\]"),
    ({"placeholders": ["situation"], "text": {"en": "{situation}"}}, r"'open_question' takes"),
    ({"placeholders": ["situation", "question"], "text": {"en": "{situation!r} {question}"}},
     r"format spec"),
])
def test_template_placeholders_are_checked(tmp_path, body, pattern):
  path = tmp_path / "open_question.json"
  path.write_text(json.dumps({"name": "open_question", **body}, indent=1), encoding="utf-8")
  with pytest.raises(ValueJaxError, match=r"open_question\.json:\d+: .*" + pattern):
    read_template(path)


def test_counts_markdown_matches_items(schwartz):
  from valuejax.data.counts import counts_markdown
  text = counts_markdown(schwartz)
  assert f"| total | {len(schwartz.descriptions)} |" in text and "| conservation_reversed | 40 |" in text
  n_eval = sum(s.split == "eval" and s.dimension == "openness_vs_conservation" for s in schwartz.situations)
  assert re.search(rf"\| openness_vs_conservation \| \d+ \| {n_eval} \|", text)


def test_shipped_data_dir_override(tmp_path, monkeypatch):
  (tmp_path / "templates").mkdir()
  monkeypatch.setenv("VALUEJAX_DATA_DIR", str(tmp_path))
  assert shipped_data_dir() == tmp_path
