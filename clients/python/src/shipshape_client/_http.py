"""The one place that speaks HTTP: urllib, a timeout on every request, JSON errors made exceptions."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Mapping, Optional, Tuple


class ShipshapeError(Exception):
    """The server answered with an error, or could not be reached.

    ``status`` is the HTTP status (``None`` when the server could not be reached), ``message`` the
    server's ``error`` field (or the transport's reason), ``line`` the bad line of a refused event batch.
    """

    def __init__(self, message: str, status: Optional[int] = None, line: Optional[int] = None) -> None:
        super().__init__(message if status is None else f"HTTP {status}: {message}")
        self.message = message
        self.status = status
        self.line = line

    @property
    def retryable(self) -> bool:
        """Whether trying again later can succeed: no answer, a timeout, 429, 503 or another 5xx."""
        return self.status is None or self.status == 429 or self.status >= 500


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused: a token is never sent anywhere but the configured server."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


_opener = urllib.request.build_opener(_NoRedirect())


class Transport:
    """Requests to one server with one token."""

    def __init__(self, url: str, token: Optional[str], timeout: float) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"shipshape URL must be http:// or https:// with a host, not {url!r}")
        self.base = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def headers(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        headers = {"User-Agent": "shipshape-client/0.1", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if extra:
            headers.update(extra)
        return headers

    def url(self, path: str, query: Optional[Mapping[str, Optional[object]]] = None) -> str:
        url = self.base + path
        if query:
            pairs = {k: str(v) for k, v in query.items() if v is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        return url

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Optional[object]]] = None,
        body: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> Tuple[int, Dict[str, str], bytes]:
        """One request; returns status, headers (lower-case names) and body. A 304 is an answer, not
        an error; any other status of 400 or more raises :class:`ShipshapeError`."""
        req = urllib.request.Request(self.url(path, query), data=body, method=method, headers=self.headers(headers))
        try:
            with _opener.open(req, timeout=self.timeout if timeout is None else timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as error:
            payload = error.read() if error.fp is not None else b""
            if error.code == 304:
                return 304, {k.lower(): v for k, v in error.headers.items()}, b""
            message, line = _error_of(payload, error.reason)
            raise ShipshapeError(message, error.code, line) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise ShipshapeError(f"cannot reach {self.base}: {reason}") from None

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        _, _, payload = self.request(method, path, **kwargs)
        return json.loads(payload) if payload else None


def _error_of(payload: bytes, reason: object) -> Tuple[str, Optional[int]]:
    try:
        parsed = json.loads(payload)
    except ValueError:
        return (payload.decode("utf-8", "replace").strip() or str(reason)), None
    if isinstance(parsed, dict):
        line = parsed.get("line")
        return str(parsed.get("error", reason)), line if isinstance(line, int) else None
    return str(reason), None
