"""Pull mode: the box polls a signed channel file and fetches the release it names.

    {"format": 1, "channel": "stable", "version": "0.3.0", "url": "venuecam-0.3.0.bundle",
     "sha256": "...", "rollout_percent": 10, "published_at": "..."}   + <channel>.sig

`url` may be relative to the channel file (same bucket or directory). A staged rollout takes
the boxes whose slot (0-99, a stable hash of the device id) is below `rollout_percent`, so
raising the percentage only adds boxes, and the first 10 % stay the first 10 % in every
release. A release this box rolled back is not fetched again by pull mode.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from venuecam.update import bundle, download, signing
from venuecam.update import manifest as mf
from venuecam.update.manifest import BundleError


def rollout_slot(device_id: str) -> int:
    return int(hashlib.sha256(f"venuecam-rollout:{device_id}".encode()).hexdigest()[:8], 16) % 100


def parse(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"channel file: not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise BundleError("channel file: expected format 1")
    for key, kind in (("version", str), ("url", str), ("rollout_percent", int)):
        if not isinstance(doc.get(key), kind) or isinstance(doc.get(key), bool):
            raise BundleError(f"channel file: {key}: expected {kind.__name__}")
    mf.parse_version(doc["version"])
    if not 0 <= doc["rollout_percent"] <= 100:
        raise BundleError("channel file: rollout_percent: expected 0 to 100")
    return doc


def poll(updater: Any) -> tuple[str, dict[str, Any] | None]:
    """(what happened, a pending request or None). Downloads the bundle when it is for us."""
    cfg = updater.cfg
    url = cfg.update.channel_url
    raw = download.fetch_small(cfg, url)
    sig = download.fetch_small(cfg, url + ".sig", limit=signing.MAX_SIG)
    signing.verify(Path(cfg.update.signers_file), raw, sig, signing.CHANNEL)
    doc = parse(raw)
    version, current = doc["version"], updater.layout.current()
    if current and not mf.newer(version, current):
        return f"up to date ({current}; channel {doc.get('channel', '?')} offers {version})", None
    if version in (updater.journal.read().get("failed") or {}):
        return f"skipping {version}: it was rolled back on this box", None
    slot = rollout_slot(cfg.device.device_id)
    if slot >= doc["rollout_percent"]:
        return (
            f"{version} is not rolled out to this box yet (slot {slot}, rollout {doc['rollout_percent']} %)",
            None,
        )
    bundle_url = download.resolve(url, doc["url"])
    dest = updater.journal.dir / "downloads" / f"venuecam-{version}.bundle"
    bundle.refuse_before_download(cfg, bundle_url)
    report = download.download(cfg, bundle_url, dest, out=updater.out)
    if doc.get("sha256") and report["sha256"] != doc["sha256"]:
        dest.unlink(missing_ok=True)
        raise BundleError(f"{bundle_url}: sha256 differs from the channel file's")
    return f"fetched {version} (slot {slot} < {doc['rollout_percent']} %)", {
        "source": download.redact_url(bundle_url), "bundle": str(dest), "version": version,
        "origin": f"channel {doc.get('channel', '?')}", "download": report, "forced": False,
    }  # fmt: skip
