"""The LAN listener's rules: the installer's page and nothing else, read-only, behind a token.

A phone on the venue's Wi-Fi opens `http://<box>:<status.lan_port>/?token=<status.lan_token>`
once; the answer sets a cookie (HttpOnly, SameSite=Strict) and sends the browser back to the
same address without the token, so it leaves the address bar and the pictures and refreshes
carry the cookie by themselves. The cookie holds a value derived from the token (an HMAC),
never the token: no answer repeats a secret. Scripts send `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from venuecam.statusd.messages import HttpError, Request, Response

if TYPE_CHECKING:
    from venuecam.statusd.app import StatusApp

COOKIE = "venuecam_token"
COOKIE_MAX_AGE_S = 30 * 86400


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"venuecam-lan-cookie", hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


def accepted(req: Request, token: str) -> tuple[bool, bool]:
    """(the client showed the token or its cookie, it came in the address)."""
    if not token:
        return False, False
    auth = req.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return _same(auth[7:].strip(), token), False
    if "token" in req.query:
        return _same(req.query["token"], token), True
    raw = req.headers.get("cookie", "")
    if raw:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return False, False
        if COOKIE in jar:
            return _same(jar[COOKIE].value, cookie_value(token)), False
    return False, False


def gate(app: StatusApp, req: Request, handler: Callable[..., Response], writes: bool) -> Response | None:
    """None when the request may go on; a redirect that sets the cookie; or HttpError."""
    if writes:
        raise HttpError(403, "the LAN listener is read-only: act on the box over ssh (`venuecam ...`)")
    if handler not in app.lan_handlers:
        raise HttpError(
            403, f"{req.path[:200]} is not served on the LAN listener (only the installer's page); use ssh"
        )
    token = app.cfg.status.lan_token
    ok, in_address = accepted(req, token)
    if not ok:
        raise HttpError(
            401,
            "this page needs the LAN token: open /?token=<status.lan_token> once (it is kept in a cookie)",
        )
    if not in_address:
        return None
    rest = {k: v for k, v in req.query.items() if k != "token"}
    where = req.path + (f"?{urlencode(rest)}" if rest else "")
    cookie = f"{COOKIE}={cookie_value(token)}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict"
    return Response(
        303,
        {"success": True, "message": "token accepted; it is kept in a cookie"},
        headers={"Location": where, "Set-Cookie": cookie},
    )
