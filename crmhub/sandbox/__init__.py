"""Synthetic worlds with ground truth, for measuring record linkage (see :mod:`.people`)."""

from __future__ import annotations

from crmhub.sandbox.people import WorldOptions, iter_world, true_pairs, write_world

__all__ = ["WorldOptions", "iter_world", "true_pairs", "write_world"]
