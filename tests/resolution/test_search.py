"""Customer search: folded golden text, kept with every golden write, found whatever the case
and accents, never by field names or rules, and gone with the customer."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

import crmhub.store
from crmhub.model import Person
from crmhub.resolution import Resolver
from crmhub.resolution.search import MAX_CHARS, fold, search_text
from crmhub.resolution.steward import Steward
from crmhub.resolution.views import search_customers
from crmhub.store.schema import customers, source_records

from .conftest import store_people


def _person(external_id: str, first: str, last: str, email: str, city: str) -> Person:
    return Person(
        source="crm",
        stream="people",
        external_id=external_id,
        first_name=first,
        last_name=last,
        emails=[email],
        address={"city": city, "country": "GB"},
        company="Société Générale" if external_id == "1" else None,
    )


PEOPLE = [
    ("crm", "1", _person("1", "José", "Müller", "jose.muller@example.com", "Zürich")),
    ("crm", "2", _person("2", "Ada", "Lovelace", "ada@example.org", "London")),
    ("crm", "3", _person("3", "Grace", "Hopper", "grace@example.net", "Arlington")),
]


@pytest.fixture
def resolved(engine: Engine) -> Resolver:
    store_people(engine, PEOPLE)
    resolver = Resolver(engine)
    resolver.resolve()
    return resolver


def _migration(name: str) -> ModuleType:
    """A migration script as a module (its file name is not an importable name)."""
    path = Path(crmhub.store.__file__).with_name("migrations") / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"migration_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _names(engine: Engine, query: str) -> list[str | None]:
    with engine.connect() as conn:
        return sorted(row["name"] or "" for row in search_customers(conn, query))


def _customer_of(engine: Engine, external_id: str) -> str:
    t = source_records.c
    with engine.connect() as conn:
        return str(
            conn.execute(select(t.customer_id).where(t.external_id == external_id)).scalar_one()
        )


def test_fold_drops_case_accents_and_extra_spaces() -> None:
    assert fold("  José   MÜLLER ") == "jose muller"
    assert fold("Société Générale") == "societe generale"
    assert fold("ﬁne") == "fine"  # compatibility forms too


def test_the_search_text_holds_the_values_not_the_field_names_or_rules() -> None:
    data = {
        "first_name": {"value": "José", "rule": "most_recent", "source_record_id": 1},
        "last_name": {"value": "Müller", "rule": "most_recent", "source_record_id": 1},
        "emails": {"value": ["jose@example.com"], "rule": "union"},
        "address": {"value": {"city": "Zürich", "country": "CH"}, "rule": "most_recent"},
        "birth_date": {"value": "1990-01-02", "rule": "most_recent"},
    }
    text = search_text(data)
    assert text == "jose muller\njose@example.com\nzurich"
    assert search_text({}) is None


def test_the_search_text_is_bounded_and_names_come_first() -> None:
    emails = [f"someone.{i}@example.com" for i in range(100)]
    data = {"full_name": {"value": "Ada Lovelace"}, "emails": {"value": emails}}
    text = search_text(data)
    assert text is not None and len(text) == MAX_CHARS
    assert text.startswith("ada lovelace\nsomeone.0@example.com")


def test_customers_are_found_whatever_the_case_and_accents(
    engine: Engine, resolved: Resolver
) -> None:
    assert _names(engine, "muller") == ["José Müller"]
    assert _names(engine, "MÜLLER") == ["José Müller"]
    assert _names(engine, "jose mul") == ["José Müller"]
    assert _names(engine, "societe") == ["José Müller"]  # the company
    assert _names(engine, "zurich") == ["José Müller"]  # the city
    assert _names(engine, "example.org") == ["Ada Lovelace"]  # part of an email


@pytest.mark.parametrize("query", ["value", "most_recent", "source_record_id", "%", "_", "GB"])
def test_field_names_rules_and_wildcards_find_nobody(
    engine: Engine, resolved: Resolver, query: str
) -> None:
    assert _names(engine, query) == []


def test_an_override_is_searchable_at_once_and_a_merged_customer_is_not(
    engine: Engine, resolved: Resolver
) -> None:
    ada, grace = _customer_of(engine, "2"), _customer_of(engine, "3")
    steward = Steward(resolved, "alice")
    steward.override(ada, "full_name", "Augusta Ada King", "her full name, from the archive")
    assert _names(engine, "augusta") == ["Augusta Ada King"]
    steward.merge(ada, grace, reason="test: one customer")
    assert _names(engine, "hopper") == ["Augusta Ada King"]  # found through the survivor
    with engine.connect() as conn:
        merged = conn.execute(
            select(customers.c.merged_into, customers.c.search_text).where(customers.c.id == grace)
        ).one()
    assert merged == (ada, None)  # a redirect holds no search text


def test_the_migration_fills_the_search_text_of_existing_customers(
    engine: Engine, resolved: Resolver
) -> None:
    with engine.begin() as conn:
        conn.execute(update(customers).values(search_text=None))
    assert _names(engine, "muller") == []
    with engine.begin() as conn:
        _migration("0007_customer_search_text").fill_search_text(conn)
    assert _names(engine, "muller") == ["José Müller"]
    with engine.connect() as conn:
        texts = dict(conn.execute(select(customers.c.id, customers.c.search_text)).all())
    assert texts[_customer_of(engine, "2")] == "ada lovelace\nada@example.org\nlondon"
