"""Metrics, each registered by the name `intervene.metric` gives it (one module per metric).

`METRICS.get(name)()` is a metric for one run; `effects.evaluate` scores a plan's edits with it and tests
each against its controls.
"""

from valuejax.metrics.base import EDIT_CHUNK, METRICS, Metric, Scored, chat_template
from valuejax.metrics import choice_protocol, forced_choice, judge, language_nll, pvq, text_likelihood  # noqa: F401
from valuejax.metrics.choice_protocol import ProtocolItem
from valuejax.metrics.language_nll import LanguagePairItem
from valuejax.metrics.pvq import PortraitItem

__all__ = ["EDIT_CHUNK", "METRICS", "LanguagePairItem", "Metric", "PortraitItem", "ProtocolItem", "Scored",
           "chat_template"]
