"""The workdir: its layout (`layout`), its bookkeeping (`state`: done markers with config fingerprints,
timings with peak RSS, the command line), and what stages write and read (`outputs`; the intervene results as
types: `results`). The launchers write through it and the report reads through it; no other module names a
workdir file."""

from valuejax.workdir import layout
from valuejax.workdir.layout import read
from valuejax.workdir.outputs import RunResults, load_sets, read_intervene, write_intervene, write_record, write_sets
from valuejax.workdir.results import (SCHEMA_VERSION, EffectRecord, GridPoint, InterveneResults, PooledResult,
                                      PrimaryEdit, PrimaryResult, SequentialLook, UnitResult, effects_of)
from valuejax.workdir.state import Timer, Workdir, command_line, fingerprint, git_commit, is_writer, peak_rss_mib

__all__ = ["SCHEMA_VERSION", "EffectRecord", "GridPoint", "InterveneResults", "PooledResult", "PrimaryEdit",
           "PrimaryResult", "RunResults", "SequentialLook", "Timer", "UnitResult", "Workdir", "command_line",
           "effects_of", "fingerprint", "git_commit", "is_writer", "layout", "load_sets", "peak_rss_mib", "read",
           "read_intervene", "write_intervene", "write_record", "write_sets"]
