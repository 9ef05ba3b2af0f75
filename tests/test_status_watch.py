"""`sisafs status --watch`: the rate and ETA arithmetic, the rendering, the refresh loop
(with a fake clock and status source), and `--until-idle` against a real mount."""

from __future__ import annotations

import shutil

from conftest import needs_fuse
from helpers import CORPUS, corpus_images, run

from sisafs.report.progress import RateMeter, format_eta, render, watch


def _status(queued: int, running: int, done: int, failed: int = 0, **extra) -> dict:
    return {"queued": queued, "running": running, "done": done, "failed": failed,
            "selective": done, "fallback": 0, "rate_per_s": 0.1, "failures": [],
            "paths": {}, "mountpoint": "/m", "vault": "/v", **extra}


def test_rate_uses_a_recent_window():
    meter = RateMeter(window=10)
    assert meter.rate() is None
    meter.add(0, 0)
    meter.add(5, 50)  # 10/s early on
    for t in range(6, 30):
        meter.add(t, 50 + (t - 5))  # then 1/s
    assert abs(meter.rate() - 1.0) < 1e-9


def test_eta_and_render():
    assert format_eta(0, None) == "idle"
    assert format_eta(10, None) == "unknown"
    assert format_eta(90, 1.0) == "1m30s"
    assert format_eta(7200, 1.0) == "2h00m"
    st = _status(3, 1, 5, 1, failures=[["bad.jpg", "UnsupportedImage: truncated"]],
                 paths={"a.jpg": "protecting", "b.jpg": "queued"})
    text = "\n".join(render(st, 2.0))
    assert "queued 3  running 1  done 5" in text and "failed 1" in text
    assert "rate 2.00/s  ETA 0m02s" in text
    assert "protecting  a.jpg" in text and "b.jpg" not in text
    assert "bad.jpg: UnsupportedImage: truncated" in text


def test_watch_until_idle_stops_when_the_queue_empties(capsys):
    states = iter([_status(2, 1, 0), _status(1, 1, 1), _status(0, 0, 3)])
    now = iter(range(100))
    rc = watch("/m", 1.0, until_idle=True, get_status=lambda _: next(states),
               clock=lambda: next(now), sleep=lambda _: None)
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("queued") == 3  # a pipe gets one block per change
    assert "done 3" in out and "ETA idle" in out


@needs_fuse
def test_until_idle_on_a_real_mount(vault, corpus):
    photos = [p for p in corpus_images() if p.name in ("eo_chinese.jpg", "ro_ch_en_num.jpg")]
    assert len(photos) == 2, f"expected corpus photos missing from {CORPUS}"
    vault.mount("--workers", "1")
    try:
        for p in photos:
            shutil.copyfile(p, vault.mnt / p.name)
        res = run("status", str(vault.mnt), "--until-idle", "--interval", "0.2", timeout=180)
        last = res.stdout.strip().split("sisafs ")[-1]
        assert "queued 0  running 0  done 2" in last and "ETA idle" in last
        assert vault.status()["done"] == 2
    finally:
        vault.unmount()
    res = run("status", str(vault.mnt), "--watch", check=False)
    assert res.returncode == 15  # not mounted any more
