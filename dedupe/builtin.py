"""The built-in match model, for data too small to train on (a new hub, a short file).

Trained once per process, without labels, on the seeded synthetic people of
:mod:`crmhub.sandbox.people` — several sources, households, common names, typos — so its
weights reflect how real CRM duplicates differ; term frequencies of real data are unknown to
it, which is why a hub trains its own model once it has enough records.
"""

from __future__ import annotations

from functools import lru_cache

from crmhub.dedupe.model import FellegiSunter

__all__ = ["BUILTIN_TRAINING_PEOPLE", "MIN_TRAINING_RECORDS", "builtin_model"]

BUILTIN_TRAINING_PEOPLE = 6_000
"""People of the synthetic world the built-in model learns from (~10,000 records)."""

MIN_TRAINING_RECORDS = 2_000
"""Records needed before a model is trained on the data itself instead."""


@lru_cache(maxsize=1)
def _trained() -> dict[str, object]:
    from crmhub.dedupe.blocking import block
    from crmhub.dedupe.compare import compare
    from crmhub.dedupe.normalize import match_frame
    from crmhub.dedupe.training import train
    from crmhub.mapping import load_mapping
    from crmhub.model import Person
    from crmhub.sandbox.people import WorldOptions, iter_world

    mapping = load_mapping("people_file").stream("people")
    records: list[tuple[int, Person]] = []
    for source, row in iter_world(BUILTIN_TRAINING_PEOPLE, WorldOptions(seed=20261123)):
        person = mapping.apply(row, source=source, stream="people", region="GB").record
        if isinstance(person, Person):
            records.append((len(records), person))
    frame = match_frame(records)
    pairs, _ = block(frame)
    model, _ = train(frame, compare(frame, pairs.left, pairs.right), seed=0)
    return model.to_json()


def builtin_model() -> FellegiSunter:
    """The built-in model (a fresh copy each call: callers may refit it)."""
    return FellegiSunter.from_json(_trained())
