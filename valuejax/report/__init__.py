"""The run report: report.md with figures, written from a workdir's outputs (config, neuron sets, metrics,
examples, timings), saying plainly whether editing the located neurons moved value orientation.
"""

from valuejax.report.markdown import write_report
from valuejax.report.verdict import verdict

__all__ = ["write_report", "verdict"]
