"""The engine: jit'd generation and teacher forcing that reduce per-neuron statistics on device, recording
over prompt sets, and the batching helpers (special ids, buckets, padding) every padded batch goes through.
"""

from valuejax.engine.batching import SpecialIds, bucket, pack_rows, special_ids

__all__ = ["SpecialIds", "bucket", "pack_rows", "special_ids"]
