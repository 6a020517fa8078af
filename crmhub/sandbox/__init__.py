"""Sandbox systems and synthetic worlds: in-process stand-ins for the systems the hub connects
(:mod:`.world`, :mod:`.app`), seeded from synthetic people with ground truth (:mod:`.people`)."""

from __future__ import annotations

from crmhub.sandbox.app import Faults, SandboxApp
from crmhub.sandbox.people import WorldOptions, iter_world, true_pairs, write_world
from crmhub.sandbox.world import Sandbox

__all__ = [
    "Faults",
    "Sandbox",
    "SandboxApp",
    "WorldOptions",
    "iter_world",
    "true_pairs",
    "write_world",
]
