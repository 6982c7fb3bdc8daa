"""valuejax: find the neurons inside an LLM that carry human values, and edit them to prove it.

Pipeline: data -> models (params + pure forward) -> engine (jit'd generation that reduces per-neuron
statistics on device) -> locate (neuron sets) -> intervene (edits as data) -> evaluate -> report.
"""

from valuejax.errors import ValueJaxError
from valuejax.models.config import ModelConfig
from valuejax.models.edit import NeuronEdit
from valuejax.models.forward import forward

__all__ = ["ValueJaxError", "ModelConfig", "NeuronEdit", "forward", "load_model", "Model", "generate"]


def __getattr__(name):  # heavy modules load on first use
  if name in ("load_model", "Model"):
    from valuejax.models import loading
    return getattr(loading, name)
  if name == "generate":
    from valuejax.engine.generate import generate
    return generate
  raise AttributeError(name)
