"""Methods, locator rules and edit kinds, each registered by the name a config gives it.

`METHODS.get(config.method)` is the one way from a config to a method; see `base.Method` for what a method
owns, and `valuejax.registry` for how a user registers their own.
"""

from valuejax.methods.base import (
    EDITS, METHODS, RULES, ContrastMethod, Experiment, Method, Pair, Target, UnitPlan, set_name)
from valuejax.methods import edits, rules  # noqa: F401 (register the shipped edit kinds and rules)
from valuejax.methods import lape, languages, valueexploration, valuelocate  # noqa: F401 (register methods)
from valuejax.methods.design import declared_primary, grid_points, grid_summary, parse_point, primary

__all__ = [
    "EDITS", "METHODS", "RULES", "ContrastMethod", "Experiment", "Method", "Pair", "Target", "UnitPlan",
    "declared_primary", "grid_points", "grid_summary", "parse_point", "primary", "set_name",
]
