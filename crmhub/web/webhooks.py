"""Routes of the webhooks pages and their JSON API (see the module docstring of crmhub.web)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
