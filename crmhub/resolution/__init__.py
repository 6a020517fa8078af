"""Entity resolution in the hub: match keys, scored pairs, clusters and golden records in the
store, kept current incrementally after every sync, and steward merges and unmerges."""

from __future__ import annotations

from crmhub.resolution.resolver import Resolver, ResolveReport

__all__ = ["ResolveReport", "Resolver"]
