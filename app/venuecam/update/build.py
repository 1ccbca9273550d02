"""Build a signed release bundle (`make release`), a signed channel file, or a signing key.

    python -m venuecam.update.build release --key KEY --out DIR [--version V] [--target 3.13-aarch64]
                                            [--delta-from BUNDLE|MANIFEST|MARKER]
    python -m venuecam.update.build channel --key KEY --out FILE --version V --url URL [--percent P]
    python -m venuecam.update.build key --out KEY       # ed25519; prints the allowed_signers line
    python -m venuecam.update.build shipped [--install-dir /opt/venuecam] [--wheels DIR]   # the image's release

The bundle holds the app's wheel and every runtime dependency (pip included, so the release
can install the next one) as wheels for the target: Python `X.Y` on `machine`, the versions
pinned to this virtualenv's (what the tests ran against). `--target host` builds for this
machine's Python, which is how the tests get bundles they can install. Downloaded wheels are
cached per target and pin set (`--cache`), so a rebuild needs no network.

`--delta-from` cuts a delta bundle against a release: the wheels that release was installed
from, with the same sha256, are listed but not carried (manifest.py). The release is named by
its bundle, its manifest.json, or a box's release marker (`releases/<v>/.venuecam-release.json`,
the way to name the release an image shipped).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from venuecam.timeutil import iso, utcnow
from venuecam.update import bundle, signing
from venuecam.update import manifest as mf

APP_DIR = Path(__file__).resolve().parents[2]  # app/ (the source tree with pyproject.toml)
IMAGE_TARGET = "3.13-aarch64"  # Debian trixie's Python on a Pi
PRINCIPAL = "release@venuecam"


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"{' '.join(argv[:4])} ... failed:\n" + "\n".join(tail))
    return r


def parse_target(text: str) -> tuple[str, str]:
    if text == "host":
        return f"{sys.version_info.major}.{sys.version_info.minor}", platform.machine()
    m = re.fullmatch(r"(\d+\.\d+)-(aarch64|x86_64|armv7l)", text)
    if not m:
        raise SystemExit(f"--target: expected host or PY-MACHINE like {IMAGE_TARGET}, got {text!r}")
    return m.group(1), m.group(2)


def copy_source(app: Path, dest: Path, version: str | None) -> str:
    shutil.copytree(app, dest, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pyproject = dest / "pyproject.toml"
    init = dest / "venuecam" / "__init__.py"
    text_p, text_i = pyproject.read_text(), init.read_text()
    if version:
        mf.parse_version(version)
        text_p = re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', text_p, count=1)
        text_i = re.sub(r'(?m)^__version__ = ".*"$', f'__version__ = "{version}"', text_i, count=1)
        pyproject.write_text(text_p)
        init.write_text(text_i)
    found_p = re.search(r'(?m)^version = "(.*)"$', text_p)
    found_i = re.search(r'(?m)^__version__ = "(.*)"$', text_i)
    if not found_p or not found_i or found_p.group(1) != found_i.group(1):
        raise SystemExit("pyproject.toml's version and venuecam.__version__ differ")
    return found_p.group(1)


def schema_facts(src: Path) -> dict[str, int]:
    """The built tree's own schema and config versions (its db.py and config.py, not ours)."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from venuecam import db, config; "
        "m = sorted(db.MIGRATIONS); print(json.dumps({'schema': db.SCHEMA_VERSION, "
        "'lowest': (m[0] - 1) if m else db.SCHEMA_VERSION, 'config': getattr(config, 'CONFIG_VERSION', 1)}))"
    )
    return json.loads(run([sys.executable, "-c", code, str(src)]).stdout)


@functools.cache
def pins() -> str:
    out = run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"]).stdout
    return "".join(ln + "\n" for ln in out.splitlines() if ln and not ln.startswith(("-e ", "venuecam")))


def requirements(app_wheel: Path) -> tuple[str, ...]:
    """The app wheel's Requires-Dist lines (what pip resolves the dependency wheels from)."""
    with zipfile.ZipFile(app_wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    return tuple(ln for ln in text.splitlines() if ln.startswith("Requires-Dist:"))


# (target, cache, pins, requirements) -> the wheels: several releases built by one process
# (the tests build a few) resolve their dependencies once.
_RESOLVED: dict[tuple[str, ...], list[Path]] = {}


def dependency_wheels(app_wheel: Path, python: str, machine: str, cache_root: Path) -> list[Path]:
    constraints = pins()
    memo = (python, machine, str(cache_root.resolve()), constraints, *requirements(app_wheel))
    if memo in _RESOLVED and all(p.exists() for p in _RESOLVED[memo]):
        return _RESOLVED[memo]
    _RESOLVED[memo] = _dependency_wheels(app_wheel, python, machine, cache_root, constraints)
    return _RESOLVED[memo]


def _dependency_wheels(
    app_wheel: Path, python: str, machine: str, cache_root: Path, constraints: str
) -> list[Path]:
    key = hashlib.sha256(f"{python}-{machine}\n{constraints}".encode()).hexdigest()[:16]
    cache = cache_root / f"wheels-{python}-{machine}-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "constraints.txt").write_text(constraints)
    abi = "cp" + python.replace(".", "")
    platforms = [f"manylinux_2_36_{machine}", f"manylinux2014_{machine}", f"linux_{machine}"]
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "-c", str(cache / "constraints.txt"), "-d", str(cache),
            "--python-version", python, "--implementation", "cp", "--abi", abi]  # fmt: skip
    for p in platforms:
        base += ["--platform", p]
    # pip installs the next release; pytest runs the installer's check (venuecam-hw-check), as
    # in the image's release (image/15-wheels.sh): an update must not take it away.
    reqs = [str(app_wheel), "pip", "pytest"]
    offline = subprocess.run([*base, "--no-index", "--find-links", str(cache), *reqs], capture_output=True)
    if offline.returncode != 0:
        print(f"downloading wheels for Python {python} on {machine} into {cache}", file=sys.stderr)
        run([*base, *reqs])
    return sorted(p for p in cache.glob("*.whl") if not p.name.startswith("venuecam-"))


def build_release(args: argparse.Namespace) -> Path:
    python, machine = parse_target(args.target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = Path(args.key).expanduser()
    if not key.exists():
        raise SystemExit(
            f"no signing key at {key}: make one with `make release-key` (kept outside the repo) "
            "and add its public line to rootfs/etc/venuecam/release-signers"
        )
    with tempfile.TemporaryDirectory(prefix="venuecam-release-") as tmp:
        work = Path(tmp)
        version = copy_source(Path(args.app), work / "src", args.version)
        facts = schema_facts(work / "src")
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
             "-w", str(work / "app"), str(work / "src")])  # fmt: skip
        app_wheel = next((work / "app").glob(f"venuecam-{version}-*.whl"))
        wheels = [app_wheel, *dependency_wheels(app_wheel, python, machine, Path(args.cache))]
        files = {f"wheels/{w.name}": w for w in wheels}
        meta: dict[str, dict[str, object]] = {n: {"sha256": _sha256(p), "size": p.stat().st_size}
                                              for n, p in files.items()}  # fmt: skip
        base_version, base_wheels = release_wheels(Path(args.delta_from)) if args.delta_from else ("", {})
        for name, m in meta.items():
            if name != f"wheels/{app_wheel.name}" and base_wheels.get(name.split("/", 1)[1]) == m["sha256"]:
                m["carried"] = False
        raw = mf.build(
            version, iso(utcnow()) or "", python, machine,
            requires={"config_version": facts["config"], "db_schema": facts["lowest"], "update_from": args.update_from},
            provides={"config_version": facts["config"], "db_schema": facts["schema"]},
            files=meta, delta_from=base_version,
        )  # fmt: skip
        man_path = work / bundle.MANIFEST
        man_path.write_bytes(raw)
        sig = signing.sign(key, man_path, signing.RELEASE).read_bytes()
        name = f"venuecam-{version}" + (f"-from-{base_version}" if base_version else "") + ".bundle"
        target = bundle.write(out / name, raw, sig, files)
    digest = _sha256(target)
    (out / f"{target.name}.sha256").write_text(f"{digest}  {target.name}\n")
    left_out = sum(1 for m in meta.values() if m.get("carried") is False)
    delta = f"; delta from {base_version}: {left_out} of {len(meta)} wheels left out" if base_version else ""
    print(f"{target}  {target.stat().st_size} bytes  sha256 {digest}  (Python {python}, {machine}{delta})")
    return target


def release_wheels(path: Path) -> tuple[str, dict[str, str]]:
    """(version, wheel file name -> sha256) of the release a delta is cut against: from its
    bundle, its manifest.json, or a box's release marker."""
    try:
        if path.suffix == ".bundle":
            with tarfile.open(path, "r:") as tar:
                member = tar.next()
                f = tar.extractfile(member) if member and member.name == bundle.MANIFEST else None
                if f is None:
                    raise SystemExit(
                        f"--delta-from {path}: no {bundle.MANIFEST} first: not a venuecam bundle"
                    )
                man = mf.parse(f.read())
            return man.version, man.wheels
        doc = json.loads(path.read_text())
    except (OSError, tarfile.TarError, ValueError, mf.BundleError) as e:
        raise SystemExit(f"--delta-from {path}: {e}") from None
    if isinstance(doc, dict) and "files" in doc:
        man = mf.parse(path.read_bytes())
        return man.version, man.wheels
    wheels = doc.get("wheels") if isinstance(doc, dict) else None
    if not isinstance(wheels, dict) or not wheels or not isinstance(doc.get("version"), str):
        raise SystemExit(
            f"--delta-from {path}: neither a bundle, a manifest nor a release marker with its wheels"
        )
    mf.parse_version(doc["version"])
    return doc["version"], {str(k): str(v) for k, v in wheels.items()}


def build_channel(args: argparse.Namespace) -> Path:
    mf.parse_version(args.version)
    if not 0 <= args.percent <= 100:
        raise SystemExit("--percent: expected 0 to 100")
    doc = {"format": 1, "channel": args.channel, "version": args.version, "url": args.url,
           "sha256": args.sha256 or "", "rollout_percent": args.percent, "published_at": iso(utcnow())}  # fmt: skip
    out = Path(args.out)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    signing.sign(Path(args.key).expanduser(), out, signing.CHANNEL)
    print(f"{out} (+ .sig): {args.channel} -> {args.version} for {args.percent}% of boxes")
    return out


def make_key(args: argparse.Namespace) -> None:
    key = Path(args.out).expanduser()
    if key.exists():
        raise SystemExit(f"{key} exists already: not overwritten")
    key.parent.mkdir(parents=True, exist_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL, "-f", str(key)])
    pub = key.with_name(key.name + ".pub").read_text().split()
    print(f'{PRINCIPAL} namespaces="{signing.RELEASE},{signing.CHANNEL}" {pub[0]} {pub[1]}')


def mark_shipped(args: argparse.Namespace) -> None:
    """The image build, run by the release it installed: that release gets the marker an update
    writes last, so the updater takes it as complete: a gate that fails, a power cut mid-update
    and `venuecam update --rollback` can all go back to it. What it provides is its own code's."""
    from venuecam import __version__, db
    from venuecam import config as config_mod
    from venuecam.update.layout import Layout

    layout = Layout(args.install_dir)
    if not (layout.dir(__version__) / "bin" / "venuecam").exists():
        raise SystemExit(f"no release {__version__} installed in {layout.releases}")
    # The wheels it was installed from: an update takes the ones it shares from this release
    # instead of installing them again (update.reuse), and a delta bundle can be cut against it.
    wheels = {w.name: _sha256(w) for w in sorted(Path(args.wheels).glob("*.whl"))} if args.wheels else {}
    layout.mark(__version__, {
        **({"wheels": wheels} if wheels else {}),
        "version": __version__, "origin": "image", "installed_at": iso(utcnow()),
        "target": {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "machine": platform.machine()},
        "provides": {"config_version": config_mod.CONFIG_VERSION, "db_schema": db.SCHEMA_VERSION},
    })  # fmt: skip
    print(f"{layout.dir(__version__)}: marked complete (the image's release)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m venuecam.update.build", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("release", help="build and sign venuecam-<version>.bundle")
    r.add_argument("--key", required=True, help="ed25519 private key (outside the repo)")
    r.add_argument("--out", required=True, help="directory for the bundle")
    r.add_argument("--version", help="override the version (default: the source's)")
    r.add_argument("--target", default=IMAGE_TARGET, help=f"PY-MACHINE or host (default {IMAGE_TARGET})")
    r.add_argument("--update-from", default="", help="lowest release this one may update from")
    r.add_argument(
        "--delta-from", help="cut a delta bundle against this release's bundle, manifest or marker"
    )
    r.add_argument("--app", default=str(APP_DIR), help="the app's source tree")
    r.add_argument("--cache", default=str(APP_DIR.parent / "build" / "release-cache"))
    c = sub.add_parser("channel", help="write and sign a channel file")
    c.add_argument("--key", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--version", required=True)
    c.add_argument(
        "--url", required=True, help="the bundle: https://..., s3://bucket/key, or relative to the channel"
    )
    c.add_argument("--sha256", default="", help="the bundle's sha256 (checked after download)")
    c.add_argument("--percent", type=int, default=100, help="staged rollout: share of boxes (0-100)")
    c.add_argument("--channel", default="stable")
    k = sub.add_parser("key", help="make an ed25519 signing key; prints its allowed_signers line")
    k.add_argument("--out", required=True)
    s = sub.add_parser("shipped", help="the image build: mark the release it installed complete")
    s.add_argument("--install-dir", default="/opt/venuecam")
    s.add_argument("--wheels", help="the directory of the wheels the release was installed from")
    args = ap.parse_args(argv)
    commands = {"release": build_release, "channel": build_channel, "key": make_key, "shipped": mark_shipped}
    commands[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
