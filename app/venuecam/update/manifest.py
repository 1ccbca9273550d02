"""A release bundle's manifest: what it is, what it needs, and the hash of every file. Pure.

    {"format": 1, "name": "venuecam", "version": "0.2.0", "built_at": "...Z",
     "target": {"python": "3.13", "machine": "aarch64"},
     "requires": {"config_version": 1, "db_schema": 1, "update_from": "0.1.0"},
     "provides": {"config_version": 1, "db_schema": 2},
     "files": {"wheels/venuecam-0.2.0-py3-none-any.whl": {"sha256": "...", "size": 1234}, ...},
     "delta_from": "0.1.0"}

`requires` holds the lowest versions the release accepts: the config format it still reads,
the database schema it can migrate forward from, and the release it may update from
("" = any). Every file of the release is listed; nothing unlisted is accepted.

A delta bundle (`delta_from`, the release it was cut against) leaves out the wheels that
release has already: those files say `"carried": false` and keep their sha256, so the box
takes each from the release it runs only when that release was installed from the very same
wheel (its marker records every wheel's sha256). A venue's 4G line then carries the app's
wheel, not the 20 MB of botocore it already has.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from venuecam.errors import VenuecamError

FORMAT = 1
NAME = "venuecam"
MAX_BYTES = 1 << 20
VERSION_RE = re.compile(r"^\d+(\.\d+){0,3}$")
FILE_RE = re.compile(r"^wheels/[A-Za-z0-9_.+-]+\.whl$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class BundleError(VenuecamError):
    """A bundle (or channel file) is not what it must be: nothing was changed."""


def parse_version(text: str) -> tuple[int, ...]:
    if not isinstance(text, str) or not VERSION_RE.match(text):
        raise BundleError(f"version {text!r}: expected numbers separated by dots, like 1.2.0")
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (4 - len(parts))


def newer(a: str, b: str) -> bool:
    return parse_version(a) > parse_version(b)


@dataclass(frozen=True)
class Manifest:
    version: str
    built_at: str
    python: str
    machine: str
    requires: dict[str, Any]
    provides: dict[str, Any]
    files: dict[str, dict[str, Any]]
    raw: bytes
    delta_from: str = ""

    @property
    def carried(self) -> dict[str, dict[str, Any]]:
        """The files inside the bundle (all of them, but for a delta bundle)."""
        return {n: f for n, f in self.files.items() if f.get("carried", True)}

    @property
    def wheels(self) -> dict[str, str]:
        """Every wheel of the release, carried or not: file name -> sha256 (a release's marker)."""
        return {n.split("/", 1)[1]: str(f["sha256"]) for n, f in self.files.items()}

    @property
    def digest(self) -> str:
        """sha256 of the manifest as signed: names this exact build."""
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def app_wheel(self) -> str:
        return next(n for n in self.files if n.startswith(f"wheels/{NAME}-{self.version}-"))

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "built_at": self.built_at,
            "target": {"python": self.python, "machine": self.machine},
            "requires": self.requires,
            "provides": self.provides,
            "files": len(self.files),
            "bytes": sum(int(f["size"]) for f in self.files.values()),
            "carried_files": len(self.carried),
            "carried_bytes": sum(int(f["size"]) for f in self.carried.values()),
            "delta_from": self.delta_from,
            "digest": self.digest,
            "wheels": self.wheels,
        }


def _need(d: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise BundleError(f"manifest: {where}{key}: missing")
    v = d[key]
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise BundleError(f"manifest: {where}{key}: expected {kind.__name__}, got {type(v).__name__}")
    return v


def parse(raw: bytes) -> Manifest:
    """Validate a manifest's bytes strictly; BundleError names the field that is wrong."""
    if len(raw) > MAX_BYTES:
        raise BundleError(f"manifest: larger than {MAX_BYTES} bytes")
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"manifest: not JSON: {e}") from None
    if _need(d, "format", int, "") != FORMAT:
        raise BundleError(f"manifest: format {d['format']} is not one this updater reads ({FORMAT})")
    if _need(d, "name", str, "") != NAME:
        raise BundleError(f"manifest: name {d['name']!r} is not {NAME!r}")
    version = _need(d, "version", str, "")
    parse_version(version)
    target = _need(d, "target", dict, "")
    python = _need(target, "python", str, "target.")
    machine = _need(target, "machine", str, "target.")
    requires = _need(d, "requires", dict, "")
    provides = _need(d, "provides", dict, "")
    for where, section in (("requires.", requires), ("provides.", provides)):
        _need(section, "config_version", int, where)
        _need(section, "db_schema", int, where)
    update_from = requires.get("update_from", "")
    if not isinstance(update_from, str) or (update_from and not VERSION_RE.match(update_from)):
        raise BundleError(f'manifest: requires.update_from: expected a version or "", got {update_from!r}')
    files = _need(d, "files", dict, "")
    if not files:
        raise BundleError("manifest: files: empty")
    for name, meta in files.items():
        if not FILE_RE.match(name) or ".." in name:
            raise BundleError(f"manifest: files: {name!r} is not a wheel under wheels/")
        if not SHA_RE.match(str(_need(meta, "sha256", str, f"files[{name}]."))):
            raise BundleError(f"manifest: files[{name}].sha256: expected 64 hex digits")
        if _need(meta, "size", int, f"files[{name}].") < 0:
            raise BundleError(f"manifest: files[{name}].size: negative")
        if not isinstance(meta.get("carried", True), bool):
            raise BundleError(f"manifest: files[{name}].carried: expected true or false")
    delta_from = d.get("delta_from", "")
    if not isinstance(delta_from, str) or (delta_from and not VERSION_RE.match(delta_from)):
        raise BundleError(f'manifest: delta_from: expected a version or "", got {delta_from!r}')
    left_out = [n for n, meta in files.items() if not meta.get("carried", True)]
    if left_out and not delta_from:
        raise BundleError(f"manifest: files[{left_out[0]}] is not carried, but delta_from names no release")
    apps = [n for n in files if n.startswith(f"wheels/{NAME}-{version}-")]
    if len(apps) != 1:
        raise BundleError(f"manifest: expected exactly one {NAME} {version} wheel, found {len(apps)}")
    if not files[apps[0]].get("carried", True):
        raise BundleError(f"manifest: {apps[0]}: the release's own wheel must be carried")
    return Manifest(version, str(d.get("built_at", "")), python, machine, requires, provides, files, raw,
                    delta_from)  # fmt: skip


def build(version: str, built_at: str, python: str, machine: str, requires: dict[str, Any],
          provides: dict[str, Any], files: dict[str, dict[str, Any]], delta_from: str = "") -> bytes:  # fmt: skip
    doc = {
        "format": FORMAT,
        "name": NAME,
        "version": version,
        "built_at": built_at,
        "target": {"python": python, "machine": machine},
        "requires": requires,
        "provides": provides,
        "files": dict(sorted(files.items())),
    }
    if delta_from:
        doc["delta_from"] = delta_from
    raw = (json.dumps(doc, indent=1, sort_keys=False) + "\n").encode()
    parse(raw)
    return raw
