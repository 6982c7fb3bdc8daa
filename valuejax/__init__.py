"""valuejax: find the neurons inside an LLM that carry human values, and edit them to prove it.

Pipeline: data -> models (params + pure forward) -> engine (jit'd generation that reduces per-neuron
statistics on device) -> locate (neuron sets) -> intervene (edits as data) -> evaluate -> report.
"""

from valuejax.errors import ValueJaxError

__all__ = ["ValueJaxError", "ModelConfig", "NeuronEdit", "forward", "load_model", "Model", "generate"]

_LAZY = {  # heavy modules (jax, transformers) load on first use
    "ModelConfig": "valuejax.models.config",
    "NeuronEdit": "valuejax.models.edit",
    "forward": "valuejax.models.forward",
    "load_model": "valuejax.models.loading",
    "Model": "valuejax.models.loading",
    "generate": "valuejax.engine.generate",
}


def __getattr__(name):
  if name in _LAZY:
    import importlib
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'valuejax' has no attribute {name!r}")
