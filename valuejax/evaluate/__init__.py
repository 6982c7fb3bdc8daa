"""Value-orientation metrics without a judge (forced choice, Likert letters, stated option support), an
optional LLM judge, generation records, and the statistics that compare edits with random controls.
"""

from valuejax.evaluate.judge import JudgeConfig, JudgeScore, judge_alignment, judge_many, make_judge
from valuejax.evaluate.parse import (OptionSupport, PairedSupport, SupportSummary, Unparsed, paired_support,
                                     parse_option_support, summarize_support)
from valuejax.evaluate.records import GenerationRecord, read_records, write_records
from valuejax.evaluate.stats import (EffectSummary, PooledEdit, PooledTest, SequentialP, bootstrap_ci, excess_interval,
                                     holm, MirrorCorrelation, mirror_correlation, paired_differences, permutation_p,
                                     pooled_test, prediction_t_p, replicate_effects, sequential_p, summarize_effect)

_LAZY = {  # these need jax; the rest of the package stays importable without it
    "ContinuationScores": "valuejax.evaluate.scoring",
    "continuation_logprobs": "valuejax.evaluate.scoring",
    "continuation_logprobs_many": "valuejax.evaluate.scoring",
    "next_token_logprobs": "valuejax.evaluate.scoring",
    "bucket_length": "valuejax.evaluate.scoring",
    "ForcedChoiceItem": "valuejax.evaluate.choice",
    "ForcedChoiceResult": "valuejax.evaluate.choice",
    "forced_choice": "valuejax.evaluate.choice",
    "forced_choice_many": "valuejax.evaluate.choice",
    "LikertResult": "valuejax.evaluate.likert",
    "letter_token_ids": "valuejax.evaluate.likert",
    "likert_scores": "valuejax.evaluate.likert",
    "pvq_profile": "valuejax.evaluate.likert",
    "higher_order_profile": "valuejax.evaluate.likert",
}

__all__ = [
    "JudgeConfig", "JudgeScore", "judge_alignment", "judge_many", "make_judge", "OptionSupport",
    "SupportSummary", "Unparsed", "PairedSupport", "paired_support", "parse_option_support", "summarize_support",
    "GenerationRecord",
    "read_records", "write_records", "EffectSummary", "PooledEdit", "PooledTest", "pooled_test", "bootstrap_ci", "holm",
    "paired_differences", "permutation_p",
    "SequentialP", "sequential_p", "MirrorCorrelation", "mirror_correlation", "prediction_t_p", "excess_interval",
    "replicate_effects", "summarize_effect", *_LAZY,
]


def __getattr__(name):
  if name in _LAZY:
    import importlib
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'valuejax.evaluate' has no attribute {name!r}")
