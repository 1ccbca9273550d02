"""Leave out modules a program never needs, to keep its resident memory small.

`hashlib` maps OpenSSL's libcrypto (~3-4 MB of RSS) the moment peewee imports it, and
`http.client`/`xmlrpc` pull in `ssl` (libssl too) only opportunistically. A program that
hashes nothing big and speaks no TLS runs the same without them: `hashlib` falls back to
CPython's built-in digests, and the opportunistic imports catch the ImportError.
Call before anything imports them (first thing in a program's `run()`).
"""

from __future__ import annotations

import sys

OPENSSL_HASHES = ("_hashlib",)  # hashlib's OpenSSL backend; the built-in digests remain
OPENSSL = ("ssl", "_ssl", "_hashlib")  # for programs that speak no TLS at all


def leave_out(names: tuple[str, ...]) -> None:
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
