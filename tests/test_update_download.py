"""A bundle download cut halfway (every packet dropped, the link still up) resumes with an HTTP
range request where it stopped once the link is back: the bytes already fetched are not fetched
again. Real moto in a "cloud" namespace, the download in the "device" namespace, a shaped link."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import base_sections, render_toml
from update_rig import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.root]

SCRIPT = """
import json, sys
from pathlib import Path
from venuecam import config
from venuecam.update import download
cfg = config.load(sys.argv[1])
print(json.dumps(download.download(cfg, sys.argv[2], Path(sys.argv[3]), give_up_s=120, out=lambda s: print(s, file=sys.stderr))))
"""


def test_download_cut_halfway_resumes_where_it_stopped(netpair: Any, tmp_path: Path, releases: Any,
                                                        base_bundle: Path) -> None:  # fmt: skip
    s3 = netpair.start_moto()
    code = ("import boto3, sys\n"
            f"c = boto3.client('s3', endpoint_url='{s3.endpoint}', aws_access_key_id='testing-key-id',"
            " aws_secret_access_key='testing-secret-key-0123456789', region_name='us-east-1')\n"
            "c.create_bucket(Bucket='venue-videos')\n"
            "c.upload_file(sys.argv[1], 'venue-videos', 'releases/venuecam-0.1.0.bundle')\n")  # fmt: skip
    netpair.run([sys.executable, "-c", code, str(base_bundle)], ns="cloud", timeout=120)
    size = base_bundle.stat().st_size
    cfg_path = tmp_path / "venuecam.toml"
    cfg_path.write_text(render_toml(base_sections(tmp_path, storage={"endpoint_url": s3.endpoint})))
    netpair.shape(rate_mbit=40)
    dest = tmp_path / "dl" / "venuecam-0.1.0.bundle"
    dest.parent.mkdir()
    part = dest.with_name(dest.name + ".part")
    log = tmp_path / "download.log"
    with open(log, "w") as err_file:
        proc = netpair.popen([sys.executable, "-c", SCRIPT, str(cfg_path), "s3://venue-videos/releases/venuecam-0.1.0.bundle",
                              str(dest)], stdout=subprocess.PIPE, stderr=err_file, text=True)  # fmt: skip
    wait_for("half the bundle", lambda: part.exists() and part.stat().st_size >= size // 2, 120, 0.05)
    netpair.blackhole(True)
    cut_at = part.stat().st_size
    # The client gives up on that connection after its read timeout, and says so.
    wait_for("the download interrupted", lambda: "download interrupted" in log.read_text(), 120, 0.2)
    netpair.blackhole(False)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, log.read_text()
    report = json.loads(out)
    assert report["bytes_total"] == size and dest.read_bytes() == base_bundle.read_bytes()
    assert report["resumed_from"] and report["resumed_from"][0] >= cut_at - 2 * 1024 * 1024
    refetched = report["bytes_fetched"] - size
    assert refetched <= 0, report  # nothing fetched twice
    print(
        f"\nFIGURE download of {size} bytes cut at {cut_at}; resumed at {report['resumed_from']} after "
        f"{report['attempts']} requests; bytes fetched in all {report['bytes_fetched']}"
    )
