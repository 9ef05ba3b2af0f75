"""The main job on a demo vault: init, mount, copy photos in, unmount, look, verify.

Uses the real photos of ../shared/corpus when present, else the small bundled sample.
Everything lands in ./demo (git-ignored); the passphrase is in ./demo/passphrase.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from sisafs.formats import codec, heif_support
from sisafs.formats.metadata import has_gps_or_thumbnail
from sisafs.vault.config import VaultConfig
from sisafs.vault.keys import VaultKeys

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo"
CORPUS = ROOT.parent / "shared" / "corpus"
SAMPLE = ROOT / "sisafs" / "data" / "sample"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".avif", ".heic", ".heif")


def sisafs(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "sisafs.cli", *args], check=True)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> int:
    src = CORPUS if CORPUS.is_dir() else SAMPLE
    folders = [src, src / "heic"] if (src / "heic").is_dir() else [src]
    photos = sorted((p for d in folders for p in d.iterdir()
                     if p.suffix.lower() in PHOTO_SUFFIXES), key=lambda p: p.name)
    if DEMO.exists():
        subprocess.run(["fusermount3", "-u", "-z", str(DEMO / "Photos")], capture_output=True)
        shutil.rmtree(DEMO)
    (DEMO / "Photos").mkdir(parents=True)
    passfile = DEMO / "passphrase"
    passfile.write_text("demo passphrase, not for real photos\n")
    vault, mnt = DEMO / "Photos.vault", DEMO / "Photos"

    print(f"== sisafs demo: {len(photos)} photos from {src}")
    sisafs("init", str(vault), "--passfile", str(passfile))
    sisafs("mount", str(vault), str(mnt), "--passfile", str(passfile))
    t0 = time.monotonic()
    for p in photos:
        shutil.copyfile(p, mnt / p.name)
    (mnt / "notes.txt").write_text("Passwords and plans: never readable on disk.\n")
    copied = time.monotonic() - t0
    print(f"copied in {copied:.1f} s; the workers protect them in the background...")
    sisafs("unmount", str(mnt))
    drained = time.monotonic() - t0

    print(f"\n{'photo':34s} {'path':10s} {'regions':28s} {'size':>6s}  gps/thumb public")
    # Labels are sealed in the record (version 2): the demo holds the passphrase.
    master = VaultConfig.load(vault).unlock(passfile.read_text().strip().encode())
    image_key = VaultKeys.from_master(master).image
    thumbs = []
    for p in photos:
        pub = (vault / p.name).read_bytes()
        info = codec.inspect(pub, image_key)
        labels: dict[str, int] = {}
        for r in info["regions"]:
            labels[r.get("label", "region")] = labels.get(r.get("label", "region"), 0) + 1
        desc = ", ".join(f"{n} {k}" for k, n in sorted(labels.items()))
        heif_support.ensure()
        im = Image.open(io.BytesIO(pub))
        exif = im.info.get("exif")
        gps, thumb = has_gps_or_thumbnail(exif) if exif else (False, False)
        print(f"{p.name:34s} {info['path']:10s} {desc[:28]:28s} {len(pub) / p.stat().st_size:5.2f}x"
              f"  {'yes' if gps or thumb else 'no'}")
        im.thumbnail((256, 256))
        thumbs.append(im.convert("RGB"))
    note = (vault / "notes.txt").read_bytes()
    print(f"\nnotes.txt on disk starts with {note[:5]!r}: encrypted whole, "
          f"plaintext found: {b'Passwords' in note}")

    sheet = Image.new("RGB", (256 * 6, 256 * (-(-len(thumbs) // 6))), "white")
    for i, t in enumerate(thumbs):
        sheet.paste(t, ((i % 6) * 256, (i // 6) * 256))
    sheet.save(DEMO / "contact_sheet.png")

    sisafs("mount", str(vault), str(mnt), "--passfile", str(passfile))
    exact = sum(sha(mnt / p.name) == sha(p) for p in photos)
    sisafs("unmount", str(mnt))
    print(f"\nkey holder reads {exact}/{len(photos)} photos back byte-exact (sha256)")
    print(f"copy-in {copied:.1f} s, protected and on disk after {drained:.1f} s")
    print(f"what the backing directory shows: {DEMO / 'contact_sheet.png'}")
    return 0 if exact == len(photos) else 1


if __name__ == "__main__":
    sys.exit(main())
