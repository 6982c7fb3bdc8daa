"""Random controls: neuron sets of the same size and the same per-layer counts as a located set, and the
located edit moved onto them, so that an effect can be compared with what any such set would do.

`ControlFamily` (the default, "mirrored") draws one random counterpart of a whole family of located edits per
replicate, within activity bins of each layer; `control_edits` (the "independent" option) draws each edit's
controls on their own, matched on the layer only.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.intervene.edits import Edit, MaskLike, as_mask


def _rng(seed: int, i: int) -> np.random.Generator:
  # One stream per control: control i is the same whatever n is, so adding controls extends a run.
  return np.random.default_rng([int(seed), int(i)])


def random_controls(mask: MaskLike, n: int, seed: int, *, exclude_located: bool = True,
                    exclude: MaskLike | None = None, shape: tuple[int, int] | None = None) -> np.ndarray:
  """`n` random `[L, F]` masks with exactly the located set's per-layer counts; returns `[n, L, F]` bool.

  With `exclude_located` the controls never contain a located neuron (a control that shares neurons with the
  set it controls for would understate the difference); `exclude` removes further neurons from the pool.
  Reproducible from `seed`; control i does not depend on `n`.
  """
  located = as_mask(mask, shape)
  forbidden = located.copy() if exclude_located else np.zeros_like(located)
  if exclude is not None:
    forbidden |= as_mask(exclude, located.shape)
  counts = located.sum(1)
  pools = [np.flatnonzero(~forbidden[layer]) for layer in range(located.shape[0])]
  for layer, (k, pool) in enumerate(zip(counts, pools)):
    if k > pool.size:
      raise ValueJaxError(f"layer {layer} has {k} located neurons but only {pool.size} neurons to draw "
                          "controls from", fix="use exclude_located=False, or a smaller neuron set")
  out = np.zeros((n, *located.shape), bool)
  for i in range(n):
    rng = _rng(seed, i)
    for layer, (k, pool) in enumerate(zip(counts, pools)):
      if k:
        out[i, layer, rng.choice(pool, size=int(k), replace=False)] = True
  return out


def transplant(edit: Edit, control: np.ndarray, seed: int = 0, name: str | None = None) -> Edit:
  """Moves each edited neuron's (scale, add, clamp_max) onto a neuron of `control` in the same layer.

  `control` must have the edit's per-layer counts (as `random_controls` of `edit.edited_mask()` does). The
  pairing within a layer is a seeded shuffle, so per-neuron strengths (steering's add) are kept as a
  distribution, not tied to neuron order. A neuron both clamped and pushed (steering's overlap) moves as one,
  so its control neuron is clamped, then pushed, too. Scope, keep_prob and key are unchanged: the control's
  pushes are kept with the same probability, one draw per neuron, layer and decode step, from the same key
  (the draws of other neuron indices than the located edit's, so not the same coin flips).
  """
  edited = edit.edited_mask()
  control = np.asarray(control, bool)
  if control.shape != edited.shape or (control.sum(1) != edited.sum(1)).any():
    raise ValueJaxError("a control must have the edit's shape and per-layer neuron counts",
                        fix="draw it with random_controls(edit.edited_mask(), ...)")
  n = edit.neurons
  fields = [np.asarray(n.scale), np.asarray(n.add), np.asarray(n.clamp_max)]
  idents = (1.0, 0.0, np.inf)
  out = [np.full(edited.shape, ident, np.float32) for ident in idents]
  rng = np.random.default_rng([int(seed), 1])
  for layer in range(edited.shape[0]):
    src = np.flatnonzero(edited[layer])
    dst = rng.permutation(np.flatnonzero(control[layer]))
    for o, f in zip(out, fields):
      o[layer, dst] = f[layer, src]
  neurons = n._replace(scale=jnp.asarray(out[0]), add=jnp.asarray(out[1]), clamp_max=jnp.asarray(out[2]))
  return Edit(neurons, edit.scope, name or f"{edit.name}-control",
              {**edit.metadata, "control_of": edit.name})


def control_edits(edit: Edit, n: int, seed: int, *, exclude_located: bool = True) -> list[Edit]:
  """`n` random controls of `edit`: the same manipulation on size- and layer-matched random neurons."""
  masks = random_controls(edit.edited_mask(), n, seed, exclude_located=exclude_located)
  return [transplant(edit, m, seed=seed * 100003 + i, name=f"{edit.name}-control{i}")
          for i, m in enumerate(masks)]


# --- control families: one random relabelling of a unit's located neurons per replicate ------------------

# Quantile bins per layer when controls are matched on activity: deciles of the layer's activation
# probability (or mean activation), so a located neuron's replacement fires about as often as it does.
ACTIVITY_BINS = 10
MATCHES = ("p", "mean", "layer")


def neuron_activity(count: np.ndarray, s1: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
  """{"p": C / T, "mean": S1 / T}: [L, F] activity of every neuron pooled over all recorded groups (count, s1:
  [G, L, F] sums; tokens: [G]), what controls are matched on (`intervene.control_match`).

  Pooled over every recorded group, not the unit's own: one map for the whole run, so every unit (and a
  family spanning units, as the positive control's targets do) bins its neurons by the same measure, and a
  neuron's activity is not read only off the prompts that selected it as located."""
  t = max(float(np.sum(tokens)), 1.0)
  return {"p": np.asarray(count, np.float64).sum(0) / t, "mean": np.asarray(s1, np.float64).sum(0) / t}


def activity_bins(activity: np.ndarray | None, shape: tuple[int, int], n_bins: int = ACTIVITY_BINS) -> np.ndarray:
  """[L, F] int: each neuron's quantile bin of `activity` within its layer (0 = least active); all 0 without
  activity (matching on the layer only). Tied values share a bin (an edge equal to a value puts it above),
  so a layer whose neurons are mostly silent has one bin of silent neurons, not several split arbitrarily."""
  out = np.zeros(shape, np.int64)
  if activity is None:
    return out
  a = np.asarray(activity, np.float64)
  if a.shape != tuple(shape):
    raise ValueJaxError(f"activity has shape {a.shape}, the neuron sets {tuple(shape)}",
                        "record/stats.npz", "record and locate with the model this run edits")
  for layer in range(a.shape[0]):
    edges = np.quantile(a[layer], np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    out[layer] = np.searchsorted(edges, a[layer], side="right")
  return out


@dataclasses.dataclass(frozen=True)
class ControlFamily:
  """The random counterparts of a family of located edits (a unit's, or several units' sharing neurons).

  Replicate r is one injective map, per layer, from every located neuron of the family (`located`, the union
  of its edits' neurons) onto neurons outside it, each drawn from its own activity bin (`bins`) without
  replacement, else from the nearest bin with room (a fallback). Every edit of the family is moved through
  the same map, so the family's structure carries over: enhance's pushed and clamped sets become A_r and B_r,
  reverse's B_r and A_r; sets that overlap map to sets overlapping in the same neurons' images, disjoint sets
  to disjoint ones. A located neuron's (scale, add, clamp_max) moves to its image, so per-neuron strengths
  land on the random neurons in a seeded random order (the order of the draw), the same for every edit of
  the replicate. Replicate r depends on (seed, r) only: drawing 19 or 99 replicates gives the same first 19.
  """
  located: np.ndarray  # [L, F] bool
  bins: np.ndarray  # [L, F] int
  seed: int

  @classmethod
  def of(cls, edits: list[Edit], seed: int, activity: np.ndarray | None = None,
         n_bins: int = ACTIVITY_BINS) -> "ControlFamily":
    located = np.any([e.edited_mask() for e in edits], axis=0)
    bins = activity_bins(activity, located.shape, n_bins)
    for layer in range(located.shape[0]):
      k, free = int(located[layer].sum()), int((~located[layer]).sum())
      if k > free:
        raise ValueJaxError(f"layer {layer} has {k} located neurons but only {free} other neurons to draw "
                            "controls from", fix="use a smaller neuron set")
    return cls(located, bins, int(seed))

  def draw(self, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Replicate r: ([L, F] int image of every located neuron, -1 elsewhere; [L, F] bool: the located
    neurons whose image came from another bin than their own)."""
    image = np.full(self.located.shape, -1, np.int64)
    fell = np.zeros(self.located.shape, bool)
    rng = np.random.default_rng([self.seed, int(r), 1])
    for layer in range(self.located.shape[0]):
      src = rng.permutation(np.flatnonzero(self.located[layer]))
      if not src.size:
        continue
      bins, free = self.bins[layer], ~self.located[layer]
      own = bins[src]
      dst = np.full(src.size, -1, np.int64)
      # Every bin first takes its own neurons, then the rest fall back, so no fallback takes room a later
      # bin needs for its own.
      for b in np.unique(own):
        idx = np.flatnonzero(own == b)
        pool = np.flatnonzero(free & (bins == b))
        take = min(idx.size, pool.size)
        chosen = rng.choice(pool, size=take, replace=False)
        dst[idx[:take]], free[chosen] = chosen, False
      for j in np.flatnonzero(dst < 0):
        room = np.flatnonzero(free)
        dist = np.abs(bins[room] - own[j])
        pick = int(rng.choice(room[dist == dist.min()]))
        dst[j], free[pick], fell[layer, src[j]] = pick, False, True
      image[layer, src] = dst
    return image, fell

  def controls(self, edits: list[Edit], counts: list[int]) -> tuple[list[list[Edit]], list[int]]:
    """The first counts[i] replicates of each edit (edits of this family), and each edit's fallbacks summed
    over its replicates."""
    out: list[list[Edit]] = [[] for _ in edits]
    fallbacks = [0] * len(edits)
    masks = [e.edited_mask() for e in edits]
    for r in range(max(counts, default=0)):
      image, fell = self.draw(r)
      for i, e in enumerate(edits):
        if r < counts[i]:
          out[i].append(move(e, image, f"{e.name}-control{r}", {"replicate": r}))
          fallbacks[i] += int(fell[masks[i]].sum())
    return out, fallbacks


def move(edit: Edit, image: np.ndarray, name: str, metadata: dict | None = None) -> Edit:
  """The edit with each edited neuron's (scale, add, clamp_max) moved to its `image` ([L, F] int, an index
  in the same layer for every edited neuron). Scope, keep_prob and key are unchanged (see transplant)."""
  edited = edit.edited_mask()
  layers, idx = np.nonzero(edited)
  dst = np.asarray(image)[layers, idx]
  if (dst < 0).any() or len(set(zip(layers.tolist(), dst.tolist()))) != dst.size:
    raise ValueJaxError("a control map must send every edited neuron to its own neuron of the same layer",
                        fix="draw the map with ControlFamily.draw over a family holding this edit")
  n = edit.neurons
  moved = []
  for f, ident in ((n.scale, 1.0), (n.add, 0.0), (n.clamp_max, np.inf)):
    o = np.full(edited.shape, ident, np.float32)
    o[layers, dst] = np.asarray(f)[layers, idx]
    moved.append(jnp.asarray(o))
  neurons = n._replace(scale=moved[0], add=moved[1], clamp_max=moved[2])
  return Edit(neurons, edit.scope, name, {**edit.metadata, "control_of": edit.name, **(metadata or {})})


def activity_summary(activity: np.ndarray, located: np.ndarray, controls: list[np.ndarray],
                     quantiles: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)) -> dict:
  """The quantiles of activity over the located neurons and over every control's neurons (pooled over
  replicates): the side-by-side view of whether controls fire like the located set."""
  a = np.asarray(activity, np.float64)
  ctrl = np.concatenate([a[np.asarray(c, bool)] for c in controls]) if controls else np.zeros(0)
  q = lambda v: np.quantile(v, quantiles).tolist() if v.size else None
  return {"quantiles": list(quantiles), "located": q(a[np.asarray(located, bool)]), "control": q(ctrl)}
