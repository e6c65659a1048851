"""The mirror's front page (``/``) and ``/healthz``.

``/`` lists what the mirror serves to the client asking (the models of its view of the store:
reference, hub, files, size, access), the hubs and their paths, and the line that points
modelhub at it (``export MODELHUB_MIRROR=...``): an HTML page for a browser, the same as JSON
for ``Accept: application/json``. The mirror's own URL is taken from the request (the address
the client used). Every value put into the page is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from .index import Snapshot, StoreIndex
from .routes import HubRoutes


def human_size(size: int) -> str:
    """``size`` bytes as a short text (``1.5 MB``; decimal units, as the hubs show them)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def wants_json(request: web.Request) -> bool:
    """Whether the client asked for JSON rather than a page: ``application/json`` ranked
    above ``text/html`` in ``Accept`` (``*/*`` alone, a browser's list: the page)."""
    best: dict[str, float] = {}
    for item in request.headers.get("Accept", "").split(","):
        kind, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best[kind.lower()] = max(q, best.get(kind.lower(), 0.0))
    json_q = best.get("application/json", 0.0)
    return json_q > 0 and json_q > best.get("text/html", 0.0)


def document(base: str, snap: Snapshot, hubs: Sequence[HubRoutes]) -> dict[str, Any]:
    """What the page shows, as the JSON answer has it."""
    counts: dict[str, int] = {}
    for model in snap.models:
        counts[model.hub] = counts.get(model.hub, 0) + 1
    return {
        "mirror": base,
        "export": f"export MODELHUB_MIRROR={base}",
        "models": [
            {
                "ref": m.ref,
                "hub": m.hub,
                "files": m.files,
                "size": m.size,
                "access": m.access,
                "created": m.created,
            }
            for m in snap.models
        ],
        "hubs": [
            {"hub": h.row.name, "path": h.prefix, "models": counts.get(h.row.name, 0)} for h in hubs
        ],
        "withheld": snap.withheld,
    }


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;"
    "border-bottom:1px solid #ddd}td.size,th.size{text-align:right}"
    "pre{background:#f4f4f4;padding:.6rem;overflow-x:auto}"
)


def render(doc: dict[str, Any]) -> str:
    """The HTML page of :func:`document`'s ``doc``."""
    e = html.escape
    rows = "".join(
        f'<tr><td class="ref"><code>{e(m["ref"])}</code></td><td class="hub">{e(m["hub"])}</td>'
        f'<td class="files">{m["files"]}</td>'
        f'<td class="size" data-bytes="{m["size"]}">{e(human_size(m["size"]))}</td>'
        f'<td class="access">{e(m["access"])}</td></tr>'
        for m in doc["models"]
    )
    total = sum(m["size"] for m in doc["models"])
    if rows:
        models = (
            '<table id="models"><thead><tr><th>Model</th><th>Hub</th><th>Files</th>'
            f'<th class="size">Size</th><th>Access</th></tr></thead><tbody>{rows}</tbody>'
            f'<tfoot><tr><td colspan="3">{len(doc["models"])} model(s)</td>'
            f'<td class="size" id="total">{e(human_size(total))}</td><td></td></tr></tfoot>'
            "</table>"
        )
    else:
        models = '<p id="empty">No models in this mirror yet (<code>modelhub pull REF</code>).</p>'
    withheld = (
        f'<p id="withheld">{doc["withheld"]} gated or private model(s) are served only with a '
        "token of this mirror (<code>Authorization: Bearer</code>).</p>"
        if doc["withheld"]
        else ""
    )
    hubs = "".join(
        f'<li><span class="hub">{e(h["hub"])}</span> at <code>{e(doc["mirror"] + h["path"])}'
        f"</code> ({h['models']} model(s))</li>"
        for h in doc["hubs"]
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>modelhub mirror</title><style>{_STYLE}</style></head><body>"
        "<h1>modelhub mirror</h1>"
        "<p>Point modelhub at this mirror (then <code>modelhub pull REF</code> fetches from "
        "here):</p>"
        f'<pre><code id="export">{e(doc["export"])}</code></pre>'
        f"<h2>Models</h2>{models}{withheld}"
        f'<h2>Hubs</h2><ul id="hubs">{hubs}</ul>'
        "<p>JSON: this page with <code>Accept: application/json</code>; health: "
        '<a href="/healthz">/healthz</a>.</p>'
        "</body></html>"
    )


def front_page(index: StoreIndex, hubs: Sequence[HubRoutes]) -> Handler:
    """The ``/`` handler: HTML, or JSON for ``Accept: application/json``."""

    async def page(request: web.Request) -> web.StreamResponse:
        snap = await index.snapshot()
        doc = document(f"{request.scheme}://{request.host}", snap, hubs)
        headers = {"Vary": "Accept", "Cache-Control": "no-store"}
        if wants_json(request):
            return web.json_response(doc, headers=headers)
        return web.Response(text=render(doc), content_type="text/html", headers=headers)

    return page


async def healthz(request: web.Request) -> web.Response:
    """``/healthz``: 200 ``{"status": "ok"}`` while the mirror answers (no token needed)."""
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})
