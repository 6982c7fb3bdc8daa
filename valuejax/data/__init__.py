"""The data layer: value taxonomies, typed items (descriptions, situations, portraits, dilemmas), prompts.

Pure Python (no jax): `load_framework(folder)` reads any framework written in the documented file formats.
"""

from valuejax.data.cvoice import SkippedRowsWarning, read_cvoice_activation, read_cvoice_eval, read_cvoice_release
from valuejax.data.readers import (
    NearDuplicateWarning, SplitLeakWarning, load_framework, load_shipped, near_duplicate_pairs, normalize_text,
    read_items, read_jsonl, read_taxonomy, shipped_data_dir)
from valuejax.data.schema import (
    SPLITS, Aspect, Dataset, Dilemma, DilemmaText, Dimension, FrozenMap, Portrait, Situation, Taxonomy, Value,
    ValueDescription)
from valuejax.data.templates import (
    TEMPLATE_PLACEHOLDERS, Prompt, Template, choice_protocol_prompts, cvoice_prompts, forced_choice_prompts,
    likert_prompts, load_templates, open_question_prompts, read_template,
    valuelocate_prompts)

__all__ = [
    "SPLITS", "TEMPLATE_PLACEHOLDERS", "Aspect", "Dataset", "Dilemma", "DilemmaText", "Dimension", "FrozenMap",
    "NearDuplicateWarning", "Portrait", "Prompt", "Situation", "SkippedRowsWarning", "SplitLeakWarning", "Taxonomy",
    "Template",
    "Value", "ValueDescription", "choice_protocol_prompts", "cvoice_prompts", "forced_choice_prompts",
    "likert_prompts", "load_framework", "load_shipped", "load_templates", "near_duplicate_pairs",
    "normalize_text", "open_question_prompts", "read_cvoice_activation",
    "read_cvoice_eval", "read_cvoice_release", "read_items", "read_jsonl", "read_taxonomy", "read_template",
    "shipped_data_dir", "valuelocate_prompts",
]
