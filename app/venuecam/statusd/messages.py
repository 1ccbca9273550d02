"""Request and response values shared by the router and the socket handler."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class HttpError(Exception):
    """An error the client caused or must know about; becomes a JSON error response."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    via_tcp: bool = False
    peer: str = "unix"
    via_lan: bool = False  # the LAN listener: token-protected, the installer's page only

    def json(self) -> Any:
        if not self.body:
            return None
        ctype = self.headers.get("content-type", "application/json").split(";")[0].strip()
        if ctype not in ("application/json", "text/json", ""):
            raise HttpError(415, f"expected a JSON body (Content-Type: application/json), got {ctype!r}")
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise HttpError(400, f"body is not valid JSON: {e}") from None


@dataclass
class Response:
    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # sent from disk in chunks (a clip), with Range support

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return (json.dumps(self.body, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """Every error looks the same: seed 001's "status": "error" plus seed 002's "success": false."""
    return {"success": False, "status": "error", "code": status, "message": message, **extra}
