"""Declarative mappings between a source system's fields and the canonical model, both ways.

One YAML file per source system. It is validated and compiled once, when loaded: every field
becomes a small closure, so mapping a record is a loop over closures.

Format::

    system: files                 # informational
    description: ...              # informational, optional
    streams:
      people:                     # the stream name; a stream called "*" applies to any stream
        kind: person              # person (the default) | activity
        fields:                   # canonical target -> source spec
          external_id: id
          updated_at: {from: updated_at, transform: timestamp}
          first_name: first_name
          full_name: {from: [name, display_name]}          # several sources: a list value
          emails: {from: [email, email_2]}                 # list targets collect non-empty values
          phones: {from: phone, transform: {e164: {region: US}}}
          company: {from: company, transform: [strip, {map: {values: {"N/A": null}}}]}
          address.country: country
          birth_date: {from: birth_date, transform: {date: {format: "%d/%m/%Y"}}}
          consent.email: {from: newsletter, transform: consent}
          identifiers.customer_number: customer_no
          attributes.plan: {from: plan, default: free}
          lawful_basis: {value: contract}                  # a constant
          deleted: {from: is_deleted, transform: bool, default: false}
        required: [email]         # optional: source fields that must be present and non-empty
        push:                     # writing back: source field -> canonical spec
          email: {from: emails, transform: first}
          phone: {from: phones, transform: first}
          first_name: first_name

Source specs
    A string names a source field; dotted paths reach into nested dicts (``billing.city``) and
    ``x.0`` into lists (a flat field literally called ``billing.city`` wins). A bare list of
    names is short for ``{from: [...]}``. A mapping has ``from`` (a name or a list of names:
    several names give a list value) or ``value`` (a constant), and optionally:

    - ``transform``: a name, ``{name: {arguments}}``, or a list of those, applied in order.
      Transforms are element-wise (applied to each non-None element of a list value; never
      called with None) unless marked list-level (``first``, ``first_non_empty``, ``join``,
      ``split``, ``compact``, ``constant``, ``default``), which take the whole value.
    - ``default``: the canonical value used when the source value is missing, None, blank or
      a list of blanks (transforms are then skipped), or when the transforms yield nothing.
    - ``required: true``: the record is rejected when the field ends up without a value.

    After the transforms a list target (``emails``, ``phones``) wraps a scalar into a list and
    drops None and blank elements; a scalar target given a list takes its first non-empty
    element. Blank results are treated as missing.

Canonical targets
    The fields of :class:`~crmhub.model.Person` or :class:`~crmhub.model.Activity`, nested
    model fields as ``address.city``, ``consent.<channel>`` (and ``consent.<channel>.status``)
    and ``identifiers.<name>`` / ``attributes.<name>``. ``source`` and ``stream`` are set by
    the engine. ``external_id`` must be mapped, and for activities ``kind`` and ``occurred_at``.
    A target may not be both mapped whole and in parts (``address`` and ``address.city``).

Push
    Keys are source field names (dotted keys build nested dicts); specs read canonical field
    paths, validated like targets, through the same transforms. Every push key appears in the
    output, with None when the record has no value.

YAML booleans are YAML 1.2's: only ``true``/``false``, so ``no``, ``yes``, ``on`` and ``off``
stay text. Mapping keys are always text (``{map: {values: {1: one}}}`` matches ``"1"`` and 1).
"""

from __future__ import annotations

from crmhub.mapping.loader import MappingFile, load_mapping
from crmhub.mapping.stream import Kind as Kind
from crmhub.mapping.stream import MappingResult, StreamMapping
from crmhub.mapping.values import Getter as Getter

__all__ = ["MappingFile", "MappingResult", "StreamMapping", "load_mapping"]
