"""The web app (``crmhub serve``): the review queue, the customer 360 page, ops and privacy
pages, a JSON API with an OpenAPI schema, and webhook endpoints; server-rendered, with a few
lines of JavaScript for keyboard shortcuts and no asset from outside (it works offline).

Every route states the permission it needs (:data:`crmhub.auth.PERMISSIONS`); the same library
functions serve the pages, the JSON API and the CLI.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import crmhub
from crmhub.hub import Hub
from crmhub.web.deps import NotSignedIn
from crmhub.web.rendering import render

__all__ = ["ROUTERS", "create_app"]

ROUTERS = (
    "crmhub.web.pages",
    "crmhub.web.review",
    "crmhub.web.customers",
    "crmhub.web.ops",
    "crmhub.web.privacy",
    "crmhub.web.webhooks",
)
"""The modules whose ``router`` the app includes, in order."""

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def create_app(hub: Hub) -> FastAPI:
    """The web app serving ``hub`` (opened by the caller, closed by the caller)."""
    app = FastAPI(
        title="crmhub",
        version=crmhub.__version__,
        description="The hub's JSON API: review, customers, runs, quarantine, pushes.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        # Any route taking a JSON body answers 400 when the body is not JSON at all.
        responses={400: {"description": "The request body is not valid JSON."}},
    )
    app.state.hub = hub
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), "static")
    for name in ROUTERS:
        app.include_router(importlib.import_module(name).router)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if _wants_html(request):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return JSONResponse({"detail": str(exc)}, status_code=401)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _wants_html(request):
            context = {"status": exc.status_code, "message": exc.detail, "who": None}
            return render(request, "error.html", context, status_code=exc.status_code)
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: object) -> Response:
        response: Response = await call_next(request)  # type: ignore[operator]
        response.headers.update(_SECURITY_HEADERS)
        if request.url.path.startswith("/api/") or request.method != "GET":
            response.headers["Cache-Control"] = "no-store"
        return response

    return app


def _wants_html(request: Request) -> bool:
    """A browser navigating (not an API client): it asks for HTML and is not under /api/."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )
