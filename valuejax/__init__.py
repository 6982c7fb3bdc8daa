"""valuejax: find the neurons inside an LLM that carry human values, and edit them to prove it.

Pipeline: data -> models (params + pure forward) -> engine (jit'd generation that reduces per-neuron
statistics on device) -> locate (neuron sets) -> intervene (edits as data) -> evaluate -> report.
"""

from valuejax.errors import ValueJaxError

__version__ = "0.2.0"

__all__ = ["ValueJaxError", "ModelConfig", "NeuronEdit", "forward", "load_model", "Model", "generate",
           "Generator", "Sampling", "StatsSpec", "valuelocate", "vape", "NeuronSet", "deactivate", "steering",
           "Edit", "RunResults", "__version__"]

_LAZY = {  # heavy modules (jax, transformers) load on first use
    "ModelConfig": "valuejax.models.config",
    "NeuronEdit": "valuejax.models.edit",
    "forward": "valuejax.models.forward",
    "load_model": "valuejax.models.loading",
    "Model": "valuejax.models.loading",
    "generate": "valuejax.engine.generate",
    "Generator": "valuejax.engine.generate",
    "Sampling": "valuejax.engine.generate",
    "StatsSpec": "valuejax.engine.generate",
    "valuelocate": "valuejax.locate",
    "vape": "valuejax.locate",
    "NeuronSet": "valuejax.locate",
    "deactivate": "valuejax.intervene",
    "steering": "valuejax.intervene",
    "Edit": "valuejax.intervene",
    "RunResults": "valuejax.workdir",
}


def __getattr__(name):
  if name in _LAZY:
    import importlib
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'valuejax' has no attribute {name!r}")
