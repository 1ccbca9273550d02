"""Logging set-up shared by every program: the seeds' emoji prefixes, secrets redacted.

Log lines look like `2025-01-23 10:00:00 INFO worker 📦 QUEUE: ...`; the prefixes below are
what operators grep for (`tail -f ... | grep -E "(📦 QUEUE|🌐 CONNECTIVITY)"`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

QUEUE = "📦 QUEUE:"
UPLOAD = "📤 UPLOAD:"
API = "🔔 API:"
BOOKING = "📅 BOOKING:"
CONNECTIVITY = "🌐 CONNECTIVITY:"
RETRY = "🔄 RETRY:"
CAPTURE = "🎥 CAPTURE:"
CLIP = "🎬 CLIP:"
STATUS = "📊 STATUS:"
LED = "💡 LED:"

MASK = "********"  # what a masked secret shows

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class RedactSecrets(logging.Filter):
    """Replaces every known secret value in a record's final message with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Short values would redact innocent text; a real token is never this short.
        self.secrets.extend(s for s in secrets if s and len(s) >= 4 and s not in self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        msg = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        changed = False
        for s in self.secrets:
            if s in msg:
                msg = msg.replace(s, "***")
                changed = True
            if record.exc_text and s in record.exc_text:
                record.exc_text = record.exc_text.replace(s, "***")
        if changed:
            record.msg, record.args = msg, None
        return True


_redactor = RedactSecrets()


def setup(name: str, secrets: Iterable[str] = (), level: int = logging.INFO) -> logging.Logger:
    """Configure the root logger once for a program; return the program's logger."""
    _redactor.add(secrets)
    root = logging.getLogger()
    if not any(getattr(h, "_venuecam", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
        handler.addFilter(_redactor)
        handler._venuecam = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        _add_journal(root, name)
    root.setLevel(level)
    # boto and urllib3 log request details (headers included) at DEBUG; keep them quiet.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "huey.consumer.Scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(name)


# Set by `venuecam supervise` for its programs when systemd runs it: their stderr goes to
# supervisord's log files, so warnings and errors also go to the journal (`journalctl -u
# venuecam`), where a person looking at the box sees them.
JOURNAL_ENV = "VENUECAM_JOURNAL"
SYSLOG_SOCKET = "/dev/log"


def _add_journal(root: logging.Logger, name: str) -> None:
    import os

    if os.environ.get(JOURNAL_ENV) != "1" or not os.path.exists(SYSLOG_SOCKET):
        return
    from logging.handlers import SysLogHandler

    try:
        handler = SysLogHandler(address=SYSLOG_SOCKET)
    except OSError:
        return
    handler.ident = f"venuecam-{name.replace(':', '-')}: "
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(_redactor)
    root.addHandler(handler)


def register_secrets(secrets: Iterable[str]) -> None:
    _redactor.add(secrets)


def redact(text: str) -> str:
    """Redact known secrets from text bound for an error message or status output."""
    for s in _redactor.secrets:
        text = text.replace(s, "***")
    return text


def mask_url(url: str) -> str:
    """rtsp://user:pass@host/x -> rtsp://user:********@host/x"""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    return parts._replace(netloc=netloc).geturl()
