"""Signatures with OpenSSH: `ssh-keygen -Y sign` on the builder, `-Y verify` on the box.

The box trusts the keys in an allowed_signers file (`update.signers_file`, baked into the
image from rootfs/); each line is `principal [namespaces="venuecam-release,venuecam-channel"]
ssh-ed25519 AAAA...`, so keys can be rotated by shipping a set. Only ed25519 signatures pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from venuecam.update.manifest import BundleError

RELEASE = "venuecam-release"  # namespace of a bundle's manifest signature
CHANNEL = "venuecam-channel"  # namespace of a channel file's signature
MAX_SIG = 64 * 1024
TIMEOUT_S = 30


def sign(key: Path, path: Path, namespace: str) -> Path:
    """Sign `path` with the private key; returns `path`.sig."""
    sig = path.with_name(path.name + ".sig")
    sig.unlink(missing_ok=True)
    r = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", namespace, str(path)],
                       capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)  # fmt: skip
    if r.returncode != 0 or not sig.exists():
        raise BundleError(f"signing {path.name} with {key} failed: {r.stderr.strip() or r.returncode}")
    return sig


def signer_lines(signers: Path) -> list[str]:
    try:
        text = signers.read_text()
    except FileNotFoundError:
        raise BundleError(f"no release signers file at {signers}: this box trusts no release") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise BundleError(f"{signers} lists no signing key: this box trusts no release")
    return lines


def verify(signers: Path, data: bytes, sig: bytes, namespace: str) -> str:
    """Check `sig` over `data` against the trusted keys; returns who signed (principal and key)."""
    signer_lines(signers)
    if not sig.startswith(b"-----BEGIN SSH SIGNATURE-----") or len(sig) > MAX_SIG:
        raise BundleError("signature: not an SSH signature")
    with tempfile.TemporaryDirectory(prefix="venuecam-sig-") as tmp:
        sig_path = Path(tmp) / "data.sig"
        sig_path.write_bytes(sig)
        found = subprocess.run(["ssh-keygen", "-Y", "find-principals", "-s", str(sig_path), "-f", str(signers)],
                               capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)  # fmt: skip
        principals = found.stdout.split()
        if found.returncode != 0 or not principals:
            raise BundleError(f"signature: made by a key that {signers} does not trust")
        r = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", principals[0], "-n", namespace, "-s", str(sig_path)],
            input=data, capture_output=True, timeout=TIMEOUT_S, env={**os.environ, "LC_ALL": "C"},
        )  # fmt: skip
    said = (r.stdout + r.stderr).decode(errors="replace").strip()
    if r.returncode != 0:
        raise BundleError(f"signature: does not verify ({said.splitlines()[-1] if said else r.returncode})")
    m = re.search(r"with (\S+) key (\S+)", said)
    if not m or m.group(1).upper() != "ED25519":
        raise BundleError(f"signature: not an ed25519 key ({said[:120]})")
    return f"{principals[0]} {m.group(2)}"
