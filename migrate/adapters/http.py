"""HTTP to application health pages and the front door (stdlib urllib; no proxies from the
environment, every host checked by the guard first)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from migrate.adapters import guard
from migrate.config import Inventory

# An empty ProxyHandler: http_proxy in the operator's environment must not reroute our checks.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict = field(default_factory=dict)
    body: dict = field(default_factory=dict)
    error: str | None = None


def get(inv: Inventory, url: str, *, what: str, timeout: float = 5.0) -> Response:
    """GET a JSON page. Network failures are a Response with status 0, not an exception:
    a health check that cannot connect is an outcome."""
    guard.check(inv, urlsplit(url).hostname or "", what)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            return Response(reply.status, dict(reply.headers), _json(reply.read()))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, dict(exc.headers or {}), _json(exc.read()))
    except (urllib.error.URLError, OSError) as exc:
        return Response(0, error=type(getattr(exc, "reason", exc)).__name__)


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
