"""``modelhub serve``: the store served in every hub's protocol (README, "The mirror").

Public API::

    from modelhub.mirror import make_app, serve, running
    serve(root, host="127.0.0.1", port=0, ready=print)      # blocking
    with running(root) as url:                               # tests: background thread
        ...
"""

from __future__ import annotations

from .app import BackgroundMirror, make_app, running, serve

__all__ = ["BackgroundMirror", "make_app", "running", "serve"]
