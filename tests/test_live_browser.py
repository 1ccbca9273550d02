"""A live video plays and seeks in headless Chromium straight from the bucket (moto in its own
process serves the page and the MP4 under the bucket's URL, byte ranges as R2 does).

The live MP4 has its `moov` at the end and its samples in several `mdat` boxes (shrunk here so
a short booking has several): Chromium must find the index and seek to the middle at once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import chromium
from test_live import UID, Env, Play, add_booking, env, footage, make_env  # noqa: F401 - fixtures
from venuecam import videos
from venuecam.clips.assemble import top_level_atoms
from venuecam.live.clip import DONE

pytestmark = pytest.mark.slow

PAGE = """<!doctype html><html><body>
<video id="v" src="%(src)s" preload="auto" muted></video><canvas id="c" width="64" height="48"></canvas>
<pre id="out">waiting</pre>
<script>
const v = document.getElementById("v"), out = document.getElementById("out");
v.addEventListener("loadedmetadata", () => { v.currentTime = v.duration / 2; });
v.addEventListener("seeked", () => {
  const c = document.getElementById("c").getContext("2d");
  c.drawImage(v, 0, 0, 64, 48);
  const px = c.getImageData(0, 0, 64, 48).data;
  let lo = 255, hi = 0;
  for (let i = 0; i < px.length; i += 4) { lo = Math.min(lo, px[i]); hi = Math.max(hi, px[i]); }
  out.textContent = JSON.stringify({duration: v.duration, currentTime: v.currentTime,
    readyState: v.readyState, width: v.videoWidth, height: v.videoHeight, spread: hi - lo});
});
v.addEventListener("error", () => { out.textContent = "error " + v.error.code + " " + v.error.message; });
</script></body></html>
"""


def test_a_live_video_plays_and_seeks_to_the_middle_in_chromium(env: Env) -> None:  # noqa: F811
    start, end = env.base + 3, env.base + 37
    add_booking(env.cfg, start, end)
    play = Play(env)
    play.start(start)
    assert play.run(start, end + 10)[0] == DONE
    video = videos.get(UID)
    kinds = [k for k, _, _ in top_level_atoms(Path(video.mp4_path))]
    assert kinds.count("mdat") >= 4 and kinds[-1] == "moov"
    # The page beside the video in the bucket (same origin: the canvas may read the frame);
    # both through presigned URLs, as the platform gets them when the bucket is not public.
    bucket = env.bucket()

    def presigned(key: str) -> str:
        return str(bucket.generate_presigned_url("get_object", Params={"Bucket": "venue-videos", "Key": key}))

    page_key = f"{Path(video.mp4_key).parent}/player.html"
    html = PAGE % {"src": presigned(video.mp4_key).replace("&", "&amp;")}
    bucket.put_object(Bucket="venue-videos", Key=page_key, Body=html.encode(), ContentType="text/html")
    url = presigned(page_key)
    dom = chromium.dump_dom(url)
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    assert found.group(1).startswith("{"), f"the page says: {found.group(1)}"
    got = json.loads(found.group(1))
    assert abs(got["duration"] - (end - start)) <= 1.0
    assert abs(got["currentTime"] - got["duration"] / 2) <= 1.0
    assert got["readyState"] >= 2 and (got["width"], got["height"]) == (320, 240)
    assert got["spread"] > 30, "a decoded picture, not a blank frame"
