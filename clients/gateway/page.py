"""The live seat-map page (`/demo`): static HTML, JS and CSS from clients/gateway/static/.

The page itself only talks to the gateway's routes (an anonymous session, seat map, SSE
changes, holds, checkout), so it is a plain client of the API and needs no server-side state.
"""

import html
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
DEFAULT_EVENT = "demo"
EventId = Annotated[str, Query(min_length=1, max_length=128, description="The event to show.")]


def _page(event_id: str, unpaid_confirm: bool) -> str:
    # Read per request (a few kB) so an edited page shows without restarting the gateway.
    template = (STATIC / "index.html").read_text(encoding="utf-8")
    page = template.replace("{{event_id}}", html.escape(event_id, quote=True))
    return page.replace("{{unpaid_confirm}}", "true" if unpaid_confirm else "false")


def add_page_routes(app: FastAPI) -> None:
    app.mount("/demo/static", StaticFiles(directory=STATIC), name="demo-static")

    @app.get("/demo", tags=["page"], response_class=HTMLResponse)
    async def demo_page(request: Request, event: EventId = DEFAULT_EVENT) -> HTMLResponse:
        """The live seat map of `event`: pick seats or ask for the best ones, hold them, pay."""
        # The "Confirm (demo, no payment)" button shows when the gateway would serve it.
        unpaid = request.app.state.trust.allow_unpaid_confirm
        page = _page(event, unpaid and request.app.state.checkout.checkout is None)
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
