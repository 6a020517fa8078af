"""Server-rendered pages: one Jinja environment, the navigation each role sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

__all__ = ["NAVIGATION", "render", "templates"]

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))

NAVIGATION: tuple[tuple[str, str, str], ...] = (
    ("/review", "Review", "review.read"),
    ("/customers", "Customers", "customers.read"),
    ("/runs", "Runs", "ops.read"),
    ("/quarantine", "Quarantine", "ops.read"),
    ("/pushes", "Pushes", "ops.read"),
    ("/privacy", "Privacy", "privacy.read"),
)
"""(path, label, permission): a link is shown to the roles that may open it."""


def render(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    """Render ``template``; the context gets the viewer's navigation and CSRF token."""
    who = context.get("who")
    links = [(path, label) for path, label, need in NAVIGATION if who and who.can(need)]
    full = {"nav": links, "csrf_token": getattr(who, "csrf", None) or "", **context}
    return templates.TemplateResponse(request, template, full, status_code=status_code)
