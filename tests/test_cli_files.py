"""Single-file commands: keygen, protect, restore, inspect, and their exit codes."""

from __future__ import annotations

import io
import json
import stat

from helpers import run, sha256
from PIL import Image

from sisafs.formats.metadata import has_gps_or_thumbnail


def test_keygen_protect_inspect_restore(tmp_path, corpus):
    key = tmp_path / "k"
    run("keygen", str(key))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    assert run("keygen", str(key), check=False).returncode == 2  # never overwrite a key

    src = corpus / "exif_gps_DSCN0025.jpg"
    pub, back = tmp_path / "pub.jpg", tmp_path / "back.jpg"
    out = run("protect", str(src), str(pub), "--keyfile", str(key), "--level", "4").stdout
    assert "protected (selective)" in out
    with Image.open(pub) as im:
        assert im.size == Image.open(src).size
        gps, thumb = has_gps_or_thumbnail(im.info.get("exif"))
    assert not gps and not thumb  # the original has both

    info = json.loads(run("inspect", str(pub), "--json").stdout)
    assert info["format"] == "jpeg" and info["path"] == "selective"
    assert info["record_bytes"] > 0
    # Without a key: what the public image shows anyway (record version 2).
    assert info["regions"] and set(info["regions"][0]) <= {"box", "look", "mask_share",
                                                           "outline"}
    assert info["original_size"] is None
    assert all(len(r["box"]) == 4 for r in info["regions"])
    keyed = json.loads(run("inspect", str(pub), "--json", "--keyfile", str(key)).stdout)
    assert {"label", "box", "score", "look"} <= set(keyed["regions"][0])
    assert keyed["original_size"] == src.stat().st_size
    assert {r["look"] for r in info["regions"]} == {"noise"}  # level 4 encrypts

    run("restore", str(pub), str(back), "--keyfile", str(key))
    assert sha256(back) == sha256(src)


def test_protect_png_and_vault_key(vault, corpus, tmp_path):
    src = corpus / "fr_alex-lacamoire.png"
    pub, back = tmp_path / "pub.png", tmp_path / "back.png"
    pw = ["--vault", str(vault.dir), "--passfile", str(vault.passfile)]
    run("protect", str(src), str(pub), *pw, "--level", "1")
    info = json.loads(run("inspect", str(pub), "--json").stdout)
    assert info["format"] == "png" and {r["look"] for r in info["regions"]} == {"blur"}
    run("restore", str(pub), str(back), *pw)
    assert sha256(back) == sha256(src)


def test_bad_inputs_exit_codes(tmp_path, corpus):
    key, other = tmp_path / "k", tmp_path / "k2"
    run("keygen", str(key))
    run("keygen", str(other))
    text = tmp_path / "text.png"
    text.write_text("not an image at all")
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes((corpus / "fr_obama.jpg").read_bytes()[:5000])
    out = tmp_path / "out"
    for bad in (tmp_path / "missing.jpg", text, truncated):
        res = run("protect", str(bad), str(out), "--keyfile", str(key), check=False)
        assert res.returncode == 16, (bad, res.stderr)
        assert str(bad.name) in res.stderr
    assert not out.exists()

    pub = tmp_path / "pub.jpg"
    run("protect", str(corpus / "fr_obama.jpg"), str(pub), "--keyfile", str(key))
    res = run("restore", str(pub), str(out), "--keyfile", str(other), check=False)
    assert res.returncode == 17 and "authentication" in res.stderr
    data = bytearray(pub.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "tampered.jpg"
    tampered.write_bytes(bytes(data))
    res = run("restore", str(tampered), str(out), "--keyfile", str(key), check=False)
    assert res.returncode == 17
    assert not out.exists()  # never wrong bytes
    res = run("inspect", str(corpus / "fr_obama.jpg"), check=False)
    assert res.returncode == 16 and "no restore record" in res.stderr
    Image.open(io.BytesIO(pub.read_bytes())).load()
