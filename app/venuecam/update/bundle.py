"""The bundle file: an uncompressed tar (wheels are compressed already) whose first member is
`manifest.json`, the second its signature `manifest.json.sig`, then every file the manifest
lists as carried (all of them, but in a delta bundle). `verify()` checks the signature, then reads every file through and compares its size
and sha256, all before anything is written anywhere; `extract()` writes the files, checking
each again as it goes (the bundle could change between the two passes).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from venuecam.update import manifest as mf
from venuecam.update import signing
from venuecam.update.manifest import BundleError, Manifest

if TYPE_CHECKING:
    from venuecam.config import Config

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Verified:
    path: Path
    manifest: Manifest
    signer: str
    sha256: str  # of the whole bundle file


def write(out: Path, manifest_raw: bytes, sig: bytes, files: dict[str, Path]) -> Path:
    """Write a bundle: manifest, signature, then files in the manifest's order."""
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((MANIFEST, manifest_raw), (SIGNATURE, sig)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
        for name in mf.parse(manifest_raw).carried:
            info = tar.gettarinfo(str(files[name]), arcname=name)
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
            with open(files[name], "rb") as f:
                tar.addfile(info, f)
    os.replace(tmp, out)
    return out


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as e:
        raise BundleError(f"{path.name}: not a venuecam bundle ({e})") from None


def _small(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    member = tar.next()
    if member is None or member.name != name or not member.isreg() or member.size > limit:
        raise BundleError(
            f"not a venuecam bundle: expected {name} here, found {member.name if member else 'the end'}"
        )
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


def _members(tar: tarfile.TarFile, man: Manifest) -> Iterator[tuple[tarfile.TarInfo, str]]:
    seen: set[str] = set()
    while (member := tar.next()) is not None:
        name = member.name
        if name not in man.files:
            raise BundleError(f"bundle holds {name!r}, which the signed manifest does not list")
        if name not in man.carried:
            raise BundleError(f"bundle holds {name!r}, which the signed manifest says it does not carry")
        if not member.isreg():
            raise BundleError(f"bundle member {name!r} is not a regular file")
        if name in seen:
            raise BundleError(f"bundle holds {name!r} twice")
        seen.add(name)
        yield member, name
    missing = sorted(set(man.carried) - seen)
    if missing:
        raise BundleError(f"bundle lacks {len(missing)} file(s) the manifest lists: {', '.join(missing[:3])}")


def _check(name: str, meta: dict[str, object], size: int, digest: str) -> None:
    if size != meta["size"] or digest != meta["sha256"]:
        raise BundleError(f"{name}: does not match the signed manifest (tampered or damaged): "
                          f"{size} bytes sha256 {digest[:16]}..., expected {meta['size']} bytes {str(meta['sha256'])[:16]}...")  # fmt: skip


# A manifest (a few KB for the ~40 files of a release) and its signature, with their headers.
HEAD_BYTES = 256 * 1024


def check_head(head: bytes, signers: Path) -> str | None:
    """The signer of a bundle from its first bytes (`HEAD_BYTES`, fetched with a range request),
    so that a bundle this box would refuse for its signature is refused before it is
    downloaded. Raises BundleError as `verify()` would; None when the manifest and signature
    are not wholly in `head` (then the whole file decides)."""
    parts: list[bytes] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(head), mode="r:") as tar:
            for name, limit in ((MANIFEST, mf.MAX_BYTES), (SIGNATURE, signing.MAX_SIG)):
                member = tar.next()
                if member is None or member.offset_data + member.size > len(head):
                    return None
                if member.name != name or not member.isreg() or member.size > limit:
                    raise BundleError(f"not a venuecam bundle: expected {name} here, found {member.name}")
                f = tar.extractfile(member)
                assert f is not None
                parts.append(f.read())
    except (tarfile.TarError, EOFError, OSError):
        if len(head) < HEAD_BYTES:
            return None  # a short answer: the whole file decides
        raise BundleError("not a venuecam bundle (its first bytes are not a tar archive)") from None
    return signing.verify(signers, parts[0], parts[1], signing.RELEASE)


def refuse_before_download(cfg: Config, url: str) -> None:
    """Refuse a bundle signed by a key this box does not trust from its first bytes, before
    its tens of megabytes cross the venue's line (the whole file is verified again after)."""
    from venuecam.update import download

    check_head(download.fetch_head(cfg, url, HEAD_BYTES), Path(cfg.update.signers_file))


def verify(path: Path, signers: Path) -> Verified:
    """Signature first, then every file's size and hash, reading only: nothing is written."""
    whole = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            whole.update(chunk)
    with _open(path) as tar:
        raw = _small(tar, MANIFEST, mf.MAX_BYTES)
        sig = _small(tar, SIGNATURE, signing.MAX_SIG)
        signer = signing.verify(signers, raw, sig, signing.RELEASE)
        man = mf.parse(raw)
        for member, name in _members(tar, man):
            h, size = hashlib.sha256(), 0
            src = tar.extractfile(member)
            assert src is not None
            while chunk := src.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
            _check(name, man.files[name], size, h.hexdigest())
    return Verified(path, man, signer, whole.hexdigest())


def extract(v: Verified, dest: Path) -> dict[str, Path]:
    """Write the verified files under `dest`, checking each again; returns name -> path."""
    out: dict[str, Path] = {}
    dest.mkdir(parents=True, exist_ok=True)
    with _open(v.path) as tar:
        raw = _small(tar, MANIFEST, mf.MAX_BYTES)
        _small(tar, SIGNATURE, signing.MAX_SIG)
        if raw != v.manifest.raw:
            raise BundleError(f"{v.path.name}: changed since it was verified")
        for member, name in _members(tar, v.manifest):
            target = dest / Path(name).name
            h, size = hashlib.sha256(), 0
            src = tar.extractfile(member)
            assert src is not None
            with open(target, "wb") as f:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
            try:
                _check(name, v.manifest.files[name], size, h.hexdigest())
            except BundleError:
                target.unlink(missing_ok=True)
                raise
            out[name] = target
    return out
