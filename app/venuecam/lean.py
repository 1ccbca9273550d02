"""Leave out modules a program never needs, to keep its resident memory small.

`hashlib` maps OpenSSL's libcrypto (~3-4 MB of RSS) the moment peewee imports it, and
`http.client`/`xmlrpc` pull in `ssl` (libssl too) only opportunistically. A program that
hashes nothing big and speaks no TLS runs the same without them: `hashlib` falls back to
CPython's built-in digests, and the opportunistic imports catch the ImportError.
Call before anything imports them (first thing in a program's `run()`).

Two more groups are only ever imported "if available":
- `shutil` and `zipfile` import `bz2` and `lzma` (with their libraries) in case an archive
  needs them; the programs that leave them out make no such archives.
- `requests` imports a character-set guesser (`charset_normalizer`, ~3 MB) to decode bodies
  that declare no charset. The worker only talks JSON, which `requests` decodes as UTF-8 by
  the JSON rules, and any other body falls back to UTF-8; it leaves the guesser out
  (`leave_out` then silences the one warning `requests` gives about it).
"""

from __future__ import annotations

import sys

OPENSSL_HASHES = ("_hashlib",)  # hashlib's OpenSSL backend; the built-in digests remain
OPENSSL = ("ssl", "_ssl", "_hashlib")  # for programs that speak no TLS at all
ARCHIVE_COMPRESSION = ("bz2", "_bz2", "lzma", "_lzma")  # zlib (gzip, zip) stays
CHARSET_GUESSING = ("charset_normalizer", "chardet")


def leave_out(names: tuple[str, ...]) -> None:
    """Make `import name` raise ImportError in this process for each of `names`.

    `venuecam` calls it with a program's LEAVE_OUT before anything else is imported."""
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    if set(CHARSET_GUESSING) & set(names):
        import warnings

        # requests warns once that it found no guesser; that is the point here, not news.
        warnings.filterwarnings("ignore", message="Unable to find acceptable character detection dependency")
