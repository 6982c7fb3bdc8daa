"""The intervene stage's results as types: what intervene/metrics.json holds, written and read only through
`InterveneResults.to_json` / `from_json`, so that every reader (report, results page, tables) uses attributes
that exist rather than string keys that may not.

Layout (SCHEMA_VERSION 2): {"schema_version", "method", "metric", "metric_description", "effect_of", "alpha",
"n_controls", "units": [UnitResult], "primary": PrimaryResult | null, "grid": [GridPoint] | null}. A unit is
a pair of groups (ValueLocate) or one target (LAPE languages). Files written before the schema existed (no
"schema_version", units under "pairs", each edit's parameters spread among its keys) are converted on read.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from valuejax.errors import ValueJaxError

SCHEMA_VERSION = 2

_SCALAR = (int, float, str, bool)


def _tuple(x: Any) -> tuple:
  return tuple(x) if x is not None else ()


def _rows(x: Any) -> tuple[tuple, ...]:
  return tuple(tuple(r) for r in (x or ()))


def _opt_float(x: Any) -> float | None:
  return None if x is None else float(x)


def _clean(d: dict[str, Any]) -> dict[str, Any]:
  """A dataclass's fields as JSON: tuples as lists (nested too), the `extra` keys spread at the top."""
  extra = d.pop("extra", None) or {}
  out = {k: _plain_json(v) for k, v in d.items()}
  out.update(extra)
  return out


def _plain_json(v: Any) -> Any:
  if isinstance(v, tuple):
    return [_plain_json(x) for x in v]
  if isinstance(v, dict):
    return {k: _plain_json(x) for k, x in v.items()}
  return v


def _split(d: Mapping[str, Any], cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
  """(the keys `cls` declares, every other key): keys a newer writer added travel on in `extra`."""
  names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
  return {k: v for k, v in d.items() if k in names}, {k: v for k, v in d.items() if k not in names}


class _Flat:
  """JSON of a record whose fields are plain values (`extra` keeps a newer writer's keys); None reads as None."""

  def to_json(self) -> dict[str, Any]:
    return _clean(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, d: Mapping[str, Any] | None):
    if d is None:
      return None
    known, extra = _split(d, cls)
    return cls(**known, extra=extra)


@dataclasses.dataclass(frozen=True)
class SequentialLook(_Flat):
  """A sequential (Besag-Clifford) p and its looks (valuejax.evaluate.SequentialP.to_dict), with the replicates
  scored, which may exceed those looked at (a block scored past the stop)."""
  p_value: float | None
  h: int
  r_max: int
  looked: int
  hits: int
  stopped: str  # "h reached", "all replicates" or "undecided"
  running: tuple[int, ...] = ()
  skipped: tuple[int, ...] = ()
  replicates_scored: int | None = None
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    object.__setattr__(self, "running", _tuple(self.running))
    object.__setattr__(self, "skipped", _tuple(self.skipped))

  @property
  def decided(self) -> bool:
    return self.p_value is not None


@dataclasses.dataclass(frozen=True)
class DirectionYardstick(_Flat):
  """A located edit beside directions of its size (valuejax.metrics.effects.direction_yardsticks): the L2 norm of
  its expected change to the mean activation vector (`norm`; `push_norm` and `clamp_norm` its two parts, the
  clamp's taken at the mean: valuejax.intervene.directions.expected_change), the edited layers and the neurons
  the directions span, the two recorded groups (plus, minus) of the diff-in-means direction, the sign added
  (+1 for an edit predicted to raise the metric), that direction's own norm and the alpha scaling it to `norm`;
  the mean paired change under it (`mean`, over `n` items; None when fewer than two items pair) and its scores;
  the mean change under each random Gaussian direction of the same norm (drawn from `seed`), their mean and sd."""
  norm: float
  push_norm: float
  clamp_norm: float
  layers: tuple[int, ...] = ()
  n_neurons: int = 0
  groups: tuple[str, ...] = ()
  sign: float = 1.0
  dim_norm: float | None = None
  alpha: float | None = None
  mean: float | None = None
  n: int = 0
  scores: tuple[float | None, ...] = ()
  seed: int | None = None
  random_means: tuple[float | None, ...] = ()
  random_mean: float | None = None
  random_sd: float | None = None
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    for name in ("layers", "groups", "scores", "random_means"):
      object.__setattr__(self, name, _tuple(getattr(self, name)))

  @property
  def random_k(self) -> int:
    """How many random directions were scored."""
    return len(self.random_means)


class _WithSequential:
  """JSON of a record that carries a sequential look log (`sequential`) and keeps unknown keys (`extra`)."""

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["sequential"] = None if self.sequential is None else self.sequential.to_json()
    return _clean(d)

  @classmethod
  def from_json(cls, d: Mapping[str, Any]):
    known, extra = _split(d, cls)
    known["sequential"] = SequentialLook.from_json(d.get("sequential"))
    return cls(**known, extra=extra)


@dataclasses.dataclass(frozen=True)
class EffectRecord(_WithSequential):
  """One located edit of one unit: what it is (name, parameters, predicted direction, neurons edited), its
  per-item scores and its controls', and, when computable, its effect (paired mean change with CI, the rank p
  among its controls, the sequential looks when the primary test stopped early).

  `components` (e.g. language_nll's target and other loss) and `detail` (e.g. pvq's "profile", the judge's
  unscored counts) are the metric's own, as a mean change against the baseline (components) or as the metric
  returned them for this edit (detail). A record that is not computable has `computable` False and no mean."""
  unit: str
  edit: str
  expected: str  # "greater" or "less": the predicted direction of the change
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # mode, gamma, size, steer, ...
  n_neurons: int | None = None
  computable: bool = True
  n: int = 0  # items paired under the baseline and the edit
  n_dropped: int = 0
  describe: str = ""
  scores: tuple[float | None, ...] = ()
  control_scores: tuple[tuple[float | None, ...], ...] = ()
  control_n_dropped: tuple[int, ...] = ()
  controls_planned: int | None = None  # controls this edit had planned (the sequential rule's R_max)
  controls_scored: int | None = None
  components: Mapping[str, float] | None = None
  control_components: Mapping[str, Any] | None = None
  detail: Mapping[str, Any] | None = None
  # The effect (computable records): valuejax.evaluate.EffectSummary with its p among the controls.
  mean: float | None = None
  ci_low: float | None = None
  ci_high: float | None = None
  level: float = 0.95
  p_value: float | None = None
  n_controls: int | None = None  # None when not computable
  alternative: str | None = None
  alpha: float = 0.05
  control_mean: float | None = None
  significant: bool | None = None
  control_effects: tuple[float, ...] = ()
  control_sd: float | None = None
  controls_not_computable: int = 0
  sequential: SequentialLook | None = None
  # The located and control neurons' recorded activity and how the controls were drawn (Experiment's
  # control_activity: controls, match, fallbacks, a summary per activity measure); None in older runs.
  control_activity: Mapping[str, Any] | None = None
  # How big the effect is on other scales (forced-choice metrics; valuejax.metrics.effects.yardsticks): the share
  # of items whose preferred action flips, for the edit and its controls' mean; the mean change in log-odds with
  # its CI; the located effect as a fraction of the prompt yardstick; the loss on neutral text under the edit.
  # None in older runs and for other metrics.
  yardsticks: Mapping[str, Any] | None = None
  # The located edit beside a diff-in-means edit and random directions of its size (primary edits of a
  # forced choice with intervene.direction_yardstick); None in older runs, for other edits and other metrics.
  directions: DirectionYardstick | None = None
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # keys of a newer writer, kept as they are

  def __post_init__(self):
    if isinstance(self.directions, Mapping):
      object.__setattr__(self, "directions", DirectionYardstick.from_json(self.directions))
    object.__setattr__(self, "scores", _tuple(self.scores))
    object.__setattr__(self, "control_scores", _rows(self.control_scores))
    object.__setattr__(self, "control_n_dropped", _tuple(self.control_n_dropped))
    object.__setattr__(self, "control_effects", _tuple(self.control_effects))
    if isinstance(self.sequential, Mapping):
      object.__setattr__(self, "sequential", SequentialLook.from_json(self.sequential))

  @property
  def pair(self) -> str:
    """The unit's name (a pair of groups, or a target), as the report's tables call it."""
    return self.unit

  def to_json(self) -> dict[str, Any]:
    d = super().to_json()
    # Its own JSON, so that its unknown keys sit at its top level (as it reads them back), not under "extra".
    d["directions"] = None if self.directions is None else self.directions.to_json()
    return d

  @classmethod
  def from_old(cls, d: Mapping[str, Any], unit: str) -> EffectRecord:
    """An edit as metrics.json held it before the schema: the unit under "pair", the parameters spread among
    the keys (every scalar key this type does not declare), EffectSummary's "name" beside them."""
    names = {f.name for f in dataclasses.fields(cls)}
    known = {k: v for k, v in d.items() if k in names and k != "params"}
    rest = {k: v for k, v in d.items() if k not in names and k not in ("pair", "name")}
    params = {k: v for k, v in rest.items() if isinstance(v, _SCALAR)}
    extra = {k: v for k, v in rest.items() if k not in params}
    known["unit"] = d.get("pair", unit)
    known.setdefault("edit", d.get("name", ""))
    known.setdefault("expected", d.get("alternative") or "greater")
    known["computable"] = d.get("computable", d.get("mean") is not None)
    known["sequential"] = SequentialLook.from_json(d.get("sequential"))
    return cls(**known, params=params, extra=extra)


@dataclasses.dataclass(frozen=True)
class UnitResult:
  """One unit (a pair of groups, or a LAPE target): its eval items, the unedited scores, the computable edits
  (`effects`, each with a mean and a CI) and apart from them those that are not, and the evaluations run."""
  unit: str
  item_ids: tuple[str, ...] = ()
  baseline: tuple[float | None, ...] = ()
  baseline_mean: float | None = None
  baseline_parsed: int = 0
  effects: tuple[EffectRecord, ...] = ()
  not_computable: tuple[EffectRecord, ...] = ()
  evaluations: int = 0
  detail: Mapping[str, Any] | None = None  # the metric's extras for the unedited model (e.g. pvq's profile)
  # The unedited model told the value in the prompt (forced choice): the mean change in the metric, its CI and
  # the told scores (valuejax.metrics.effects.prompt_yardstick); None in older runs and for other metrics.
  prompt_yardstick: Mapping[str, Any] | None = None
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    object.__setattr__(self, "item_ids", _tuple(self.item_ids))
    object.__setattr__(self, "baseline", _tuple(self.baseline))
    object.__setattr__(self, "effects", _tuple(self.effects))
    object.__setattr__(self, "not_computable", _tuple(self.not_computable))

  @property
  def pair(self) -> str:
    return self.unit

  @property
  def edits(self) -> tuple[EffectRecord, ...]:
    """Every located edit, the computable ones first."""
    return self.effects + self.not_computable

  def to_json(self) -> dict[str, Any]:
    d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    d["effects"] = [e.to_json() for e in self.effects]
    d["not_computable"] = [e.to_json() for e in self.not_computable]
    return _clean(d)

  @classmethod
  def from_json(cls, d: Mapping[str, Any]) -> UnitResult:
    known, extra = _split(d, cls)
    known["effects"] = [EffectRecord.from_json(e) for e in d.get("effects", [])]
    known["not_computable"] = [EffectRecord.from_json(e) for e in d.get("not_computable", [])]
    return cls(**known, extra=extra)

  @classmethod
  def from_old(cls, d: Mapping[str, Any]) -> UnitResult:
    unit = d.get("pair", "")
    known, extra = _split({k: v for k, v in d.items() if k != "pair"}, cls)
    known["effects"] = [EffectRecord.from_old(e, unit) for e in d.get("effects", [])]
    known["not_computable"] = [EffectRecord.from_old(e, unit) for e in d.get("not_computable", [])]
    return cls(unit=unit, **{k: v for k, v in known.items() if k != "unit"}, extra=extra)


@dataclasses.dataclass(frozen=True)
class NormalityCheck(_Flat):
  """The control replicates' normality behind a pooled test's t p (valuejax.evaluate.stats.normality_check):
  n, Shapiro-Wilk W and p, skewness, excess kurtosis, and whether the t p is trusted (`reading` in words)."""
  n: int
  w: float | None = None
  p: float | None = None
  skew: float | None = None
  excess_kurtosis: float | None = None
  trusted: bool = False
  reading: str = ""
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PooledResult:
  """A pooled test (valuejax.evaluate.PooledTest.to_dict): the mean signed effect over several edits, its CI
  and its p against control replicates. A grid point's summary leaves out the replicates' effects and adds
  their 5-95% band and the mean neurons per edit."""
  mean: float
  ci_low: float
  ci_high: float
  p_value: float | None
  n_edits: int = 0
  n_controls: int = 0
  significant: bool = False
  control_effects: tuple[float, ...] = ()
  level: float = 0.95
  alpha: float = 0.05
  sequential: SequentialLook | None = None
  replicates_scored: int | None = None
  t_p: float | None = None
  excess: float | None = None
  excess_low: float | None = None
  excess_high: float | None = None
  ci_method: str | None = None
  control_band: tuple[float | None, float | None] | None = None  # grid points
  n_neurons: int | None = None  # grid points
  normality: NormalityCheck | None = None  # whether t_p may be trusted; None in runs written before it
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. a newer writer's replicate statistics

  def __post_init__(self):
    if isinstance(self.normality, Mapping):
      object.__setattr__(self, "normality", NormalityCheck.from_json(self.normality))
    object.__setattr__(self, "control_effects", _tuple(self.control_effects))
    if self.control_band is not None:
      object.__setattr__(self, "control_band", tuple(self.control_band))
    if isinstance(self.sequential, Mapping):
      object.__setattr__(self, "sequential", SequentialLook.from_json(self.sequential))

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["sequential"] = None if self.sequential is None else self.sequential.to_json()
    for k in ("control_band", "n_neurons"):  # a primary test's result has neither
      if d[k] is None:
        del d[k]
    if self.normality is not None:  # its own unknown keys at its own top level, as it reads them back
      d["normality"] = _clean(dataclasses.asdict(self.normality))
    return _clean(d)

  @classmethod
  def from_json(cls, d: Mapping[str, Any] | None) -> PooledResult | None:
    if d is None:
      return None
    known, extra = _split(d, cls)
    known["sequential"] = SequentialLook.from_json(d.get("sequential"))
    return cls(**known, extra=extra)


@dataclasses.dataclass(frozen=True)
class PrimaryEdit(_WithSequential):
  """One edit of a per-edit ("each") primary test, with its Holm-adjusted p over the family."""
  edit: str  # "<unit>, <edit name>"
  mean: float
  ci_low: float
  ci_high: float
  p_value: float | None
  adjusted_p: float
  significant: bool
  toward: bool | None = None  # the mean on the predicted side (None in runs written before it was stored)
  sequential: SequentialLook | None = None
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if isinstance(self.sequential, Mapping):
      object.__setattr__(self, "sequential", SequentialLook.from_json(self.sequential))



@dataclasses.dataclass(frozen=True)
class PrimaryResult:
  """The declared primary test: its kind ("pooled" or "each"), the declaration in words, alpha, the edits of
  its family, and its result: `pooled` for a pooled test, `each` for per-edit tests (both None when no edit
  matched the declaration)."""
  test: str
  declared: str
  alpha: float = 0.05
  edits: tuple[str, ...] = ()
  pooled: PooledResult | None = None
  each: tuple[PrimaryEdit, ...] | None = None
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    object.__setattr__(self, "edits", _tuple(self.edits))
    if self.each is not None:
      object.__setattr__(self, "each", tuple(self.each))

  @property
  def computed(self) -> bool:
    return self.pooled is not None or bool(self.each)

  def to_json(self) -> dict[str, Any]:
    result = (self.pooled.to_json() if self.pooled is not None else
              [r.to_json() for r in self.each] if self.each is not None else None)
    return {"test": self.test, "declared": self.declared, "alpha": self.alpha, "edits": list(self.edits),
            "result": result, **self.extra}

  @classmethod
  def from_json(cls, d: Mapping[str, Any] | None) -> PrimaryResult | None:
    if not d:
      return None
    res = d.get("result")
    rest = {k: v for k, v in d.items() if k not in ("test", "declared", "alpha", "edits", "result")}
    pooled = PooledResult.from_json(res) if isinstance(res, Mapping) else None
    each = [PrimaryEdit.from_json(r) for r in res] if isinstance(res, list) else None
    return cls(d["test"], d.get("declared", ""), d.get("alpha", 0.05), d.get("edits", ()), pooled, each, rest)


@dataclasses.dataclass(frozen=True)
class GridPoint:
  """One steering setting of a study's grid: its pooled effect over every unit and mode (`summary`), the
  same per unit over its modes (`units`), and whether it is the declared primary point."""
  size: str
  gamma: float
  steer: str
  primary: bool
  summary: PooledResult
  units: Mapping[str, PooledResult] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    return {"size": self.size, "gamma": self.gamma, "steer": self.steer, "primary": self.primary,
            **self.summary.to_json(), "units": {k: v.to_json() for k, v in self.units.items()}}

  @classmethod
  def from_json(cls, d: Mapping[str, Any]) -> GridPoint:
    units = d.get("units", d.get("pairs")) or {}
    rest = {k: v for k, v in d.items() if k not in ("size", "gamma", "steer", "primary", "units", "pairs")}
    return cls(str(d["size"]), float(d["gamma"]), str(d["steer"]), bool(d["primary"]), PooledResult.from_json(rest),
               {k: PooledResult.from_json(v) for k, v in units.items()})


@dataclasses.dataclass(frozen=True)
class InterveneResults:
  """The whole of intervene/metrics.json: which method and metric ran, at which alpha with how many controls,
  every unit's edits, the declared primary test and the grid (None when not declared)."""
  method: str
  metric: str
  units: tuple[UnitResult, ...] = ()
  metric_description: str = ""
  effect_of: str = "value orientation"
  alpha: float = 0.05
  n_controls: int | None = None
  primary: PrimaryResult | None = None
  grid: tuple[GridPoint, ...] | None = None
  schema_version: int = SCHEMA_VERSION
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # The edit taken apart at the primary point (valuejax.methods.design.decomposition) and the fit of the
  # effect against gamma per set size (design.dose_response); the unedited model's loss on neutral text. JSON
  # as written; None when not run (older runs included).
  decomposition: Mapping[str, Any] | None = None
  dose_response: tuple[Mapping[str, Any], ...] | None = None
  neutral_loss: Mapping[str, Any] | None = None
  # The placebo (intervene.placebo): a set located between two random halves of one group, edited and tested
  # as the primary test is ({"group", "pair", "unit", "primary": PrimaryResult JSON, "units": [UnitResult JSON]}).
  placebo: Mapping[str, Any] | None = None

  def __post_init__(self):
    object.__setattr__(self, "units", _tuple(self.units))
    if self.grid is not None:
      object.__setattr__(self, "grid", tuple(self.grid))
    if self.dose_response is not None:
      object.__setattr__(self, "dose_response", tuple(self.dose_response))

  def effects(self) -> list[EffectRecord]:
    """Every computable effect, unit by unit."""
    return [e for u in self.units for e in u.effects]

  def not_computable(self) -> list[EffectRecord]:
    return [e for u in self.units for e in u.not_computable]

  def to_json(self) -> dict[str, Any]:
    return {"schema_version": self.schema_version, "method": self.method, "metric": self.metric,
            "metric_description": self.metric_description, "effect_of": self.effect_of, "alpha": self.alpha,
            "n_controls": self.n_controls, "primary": None if self.primary is None else self.primary.to_json(),
            "grid": None if self.grid is None else [g.to_json() for g in self.grid],
            "units": [u.to_json() for u in self.units], **self.extra,
            **{k: _plain_json(getattr(self, k)) for k in _OPTIONAL if getattr(self, k) is not None}}

  @classmethod
  def from_json(cls, d: Mapping[str, Any], where: str = "metrics.json") -> InterveneResults:
    """The results of a metrics.json's content: the current layout, or one written before the schema (no
    "schema_version"; units under "pairs"), converted. A newer schema or a malformed file is refused."""
    version = d.get("schema_version")
    fix = "rerun the intervene stage with --force (python -m launch.intervene ... --force)"
    if version is not None and version != SCHEMA_VERSION:
      raise ValueJaxError(f"intervene results of schema version {version}; this valuejax reads {SCHEMA_VERSION}",
                          where, "use the valuejax that wrote them, or " + fix)
    known = ("schema_version", "method", "metric", "metric_description", "effect_of", "alpha", "n_controls",
             "primary", "grid", "units", "pairs") + _OPTIONAL
    try:
      if version is None:
        units = [UnitResult.from_old(u) for u in d.get("pairs", [])]
      else:
        units = [UnitResult.from_json(u) for u in d.get("units", [])]
      grid = d.get("grid")
      return cls(d.get("method", ""), d.get("metric", ""), units, d.get("metric_description") or "",
                 d.get("effect_of") or "value orientation", d.get("alpha", 0.05), d.get("n_controls"),
                 PrimaryResult.from_json(d.get("primary")), None if grid is None else [GridPoint.from_json(g)
                                                                                      for g in grid],
                 SCHEMA_VERSION, {k: v for k, v in d.items() if k not in known},
                 **{k: d.get(k) for k in _OPTIONAL})
    except (KeyError, TypeError, ValueError, AttributeError) as e:
      raise ValueJaxError(f"intervene results in an unreadable layout ({type(e).__name__}: {e})", where,
                          fix) from None


# InterveneResults' optional sections, written only when present.
_OPTIONAL = ("decomposition", "dose_response", "neutral_loss", "placebo")


def effects_of(results: InterveneResults | None) -> list[EffectRecord]:
  """Every computable effect of a run's results (none when the intervene stage has not run)."""
  return results.effects() if results is not None else []
