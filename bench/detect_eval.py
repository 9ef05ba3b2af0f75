"""Score the default detector stack on the shared corpus and print a Markdown table.

    python bench/detect_eval.py [--corpus ../shared/corpus]

Faces: recall against faces.json at IoU >= 0.3 (difficult faces apart) and precision of
the unmargined face boxes. Identity: for each same_person_pairs entry, enrol one side and
look for the person on the other (both directions); false matches: every face of the
corpus against every face of a different person, with the store's real decision rule.
Text: share of the lines a full-resolution (2000 px) run finds that the default run
covers. Time: wall seconds per photo on one thread, and for the 12 MP photo.

People (second table, `--people-only` prints just it): on every photo with a clearly
visible face, and dn_person.jpg, the person masks against the HOG boxes (plus face-grown
bodies, the previous default) in the same run: faces whose centre lies on a person,
person instances, mean mask share, and CPU seconds of the people step per photo with
the photo resampled to 2 MP and 12 MP (one thread, best of three; faces found
beforehand; CPU time of the whole process, so threads a library starts count too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sisafs.detect.embed import face_embedding  # noqa: E402
from sisafs.detect.faces import CenterFaceDetector  # noqa: E402
from sisafs.detect.geometry import iou, overlap_of_smaller  # noqa: E402
from sisafs.detect.people import PeopleDetector  # noqa: E402
from sisafs.detect.person_masks import PersonMaskDetector  # noqa: E402
from sisafs.detect.stack import DetectorSettings, DetectorStack  # noqa: E402
from sisafs.detect.text import TextLineDetector  # noqa: E402
from sisafs.detect.view import make_view  # noqa: E402
from sisafs.people import ENROL_MIN_FACE_PX, PeopleStore  # noqa: E402
from sisafs.regions import FACE, PERSON, Region  # noqa: E402

TWELVE_MP = "exif_Xiaomi_Mi_9T.jpg"


def face_scores(corpus: Path, truth: dict, settings: DetectorSettings) -> dict:
    """Recall/precision of the stack's face boxes (margin 0 so boxes compare with truth)."""
    stack = DetectorStack(DetectorSettings(**{**settings.to_dict(), "margin": 0.0,
                                              "people": False, "text": False}))
    found = {"easy": 0, "easy_n": 0, "hard": 0, "hard_n": 0, "det": 0, "fp": 0}
    for name, info in truth["images"].items():
        faces = [r for r in stack.detect(Image.open(corpus / name)) if r.label == FACE]
        gts = info["faces"]
        matched = set()
        for r in faces:
            found["det"] += 1
            scores = [(iou(r.box, g["box"]), i) for i, g in enumerate(gts)]
            best = max(scores, default=(0.0, -1))
            if best[0] >= 0.3:
                matched.add(best[1])
            else:
                found["fp"] += 1
        for i, g in enumerate(gts):
            kind = "hard" if g["difficult"] else "easy"
            found[f"{kind}_n"] += 1
            found[kind] += i in matched
    return found


def face_embeddings(corpus: Path, truth: dict) -> dict[tuple[str, int], tuple]:
    """(file, face index) → (embedding, face px, identity) for every detected true face."""
    detector = CenterFaceDetector(0.3, 1024, 1024)
    out = {}
    for name, info in truth["images"].items():
        if not info["faces"]:
            continue
        view = make_view(Image.open(corpus / name), 2000)
        regions = detector.detect_array(view.rgb)
        for i, g in enumerate(info["faces"]):
            gbox = view.box_to_view(g["box"])
            best = max(regions, key=lambda r, b=gbox: iou(r.box, b), default=None)
            if best is None or iou(best.box, gbox) < 0.3:
                continue
            emb = face_embedding(view.rgb, best.box)
            out[(name, i)] = (emb, min(best.box[2], best.box[3]), g.get("identity"))
    return out


def identity_scores(truth: dict, embs: dict) -> dict:
    """Found share over same-person pairs; false matches over different-person pairs."""
    found = total = 0
    for pair in truth["same_person_pairs"]:
        a = (pair["a"]["file"], pair["a"]["face"])
        b = (pair["b"]["file"], pair["b"]["face"])
        for enrol, probe in ((a, b), (b, a)):
            total += 1
            if enrol not in embs or probe not in embs or embs[enrol][1] < ENROL_MIN_FACE_PX:
                continue  # undetected, or too small to enrol (PeopleStore.add refuses it)
            store = PeopleStore()
            store.add_embeddings(pair["identity"], [embs[enrol][0]])
            found += store.match(embs[probe][0], embs[probe][1]) == pair["identity"]
    false = pairs = 0
    for a, b in itertools.combinations(sorted(embs), 2):
        ida, idb = embs[a][2], embs[b][2]
        if ida is not None and ida == idb:
            continue
        for enrol, probe in ((a, b), (b, a)):
            if embs[enrol][1] < ENROL_MIN_FACE_PX:
                continue
            pairs += 1
            store = PeopleStore()
            store.add_embeddings("enrolled", [embs[enrol][0]])
            false += store.match(embs[probe][0], embs[probe][1]) is not None
    return {"found": found, "total": total, "false": false, "pairs": pairs}


def text_scores(corpus: Path, settings: DetectorSettings) -> dict:
    """Share of full-resolution text lines the default text run covers (≥ 50 %)."""
    manifest = (corpus / "MANIFEST.tsv").read_text().splitlines()
    header = manifest[0].split("\t")
    files = [row.split("\t")[0] for row in manifest[1:]
             if row.split("\t")[header.index("category")] == "text"]
    reference = TextLineDetector(side=2000)
    default = TextLineDetector(side=settings.text_side)
    covered = lines = photos = 0
    for name in files:
        view = make_view(Image.open(corpus / name), settings.max_side)
        ref = reference.detect_array(view.rgb)
        got = default.detect_array(view.rgb)
        photos += bool(got)
        lines += len(ref)
        covered += sum(any(overlap_of_smaller(r.box, g.box) >= 0.5 for g in got) for r in ref)
    return {"covered": covered, "lines": lines, "photos_with_text": photos, "photos": len(files)}


def timing(corpus: Path, truth: dict, settings: DetectorSettings) -> dict:
    """Mean seconds per corpus photo and for the 12 MP photo (decoded beforehand)."""
    full = DetectorStack(settings)
    faces_only = DetectorStack(DetectorSettings(**{**settings.to_dict(), "people": False,
                                                   "text": False}))
    full.detect(Image.new("RGB", (64, 64)))  # load models outside the clock
    result = {}
    for label, stack in (("stack", full), ("faces", faces_only)):
        spent = 0.0
        for name in truth["images"]:
            image = Image.open(corpus / name)
            image.load()
            start = time.perf_counter()
            stack.detect(image)
            spent += time.perf_counter() - start
        result[f"{label}_mean"] = spent / len(truth["images"])
        image = Image.open(corpus / TWELVE_MP)
        image.load()
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            stack.detect(image)
            runs.append(time.perf_counter() - start)
        result[f"{label}_12mp"] = min(runs)
    return result


def _on_person(regions: list[Region], x: float, y: float) -> bool:
    for r in regions:
        rx, ry, rw, rh = r.box
        if rx <= x < rx + rw and ry <= y < ry + rh and (
                r.mask is None or r.mask[int(y - ry), int(x - rx)]):
            return True
    return False


def _resampled(image: Image.Image, megapixels: float) -> Image.Image:
    scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
    size = (round(image.width * scale), round(image.height * scale))
    return image.convert("RGB").resize(size, Image.Resampling.BILINEAR)


def people_scores(corpus: Path, truth: dict, settings: DetectorSettings) -> dict:
    """Masks vs HOG boxes on the photos with people (see the module docstring)."""
    names = [n for n, info in truth["images"].items()
             if any(not f["difficult"] for f in info["faces"])] + ["dn_person.jpg"]
    faces_stack = DetectorStack(DetectorSettings(**{**settings.to_dict(), "people": False,
                                                   "text": False}))
    masks, boxes = PersonMaskDetector(threads=1), PeopleDetector()
    masks.detect_array(make_view(Image.new("RGB", (64, 64)), 64).rgb, [])  # load the model
    finders = {"hog": lambda rgb, faces: boxes.detect_array(rgb, None),
               "hog+faces": boxes.detect_array, "masks": masks.detect_array}
    out = {k: {"faces": 0, "people": 0, "shares": [], "2": 0.0, "12": 0.0, "12max": 0.0}
           for k in finders}
    total = 0
    for name in names:
        image = Image.open(corpus / name)
        image.load()
        view = make_view(image, settings.max_side)
        faces = faces_stack._faces(view)
        centres = [(f["box"][0] + f["box"][2] / 2, f["box"][1] + f["box"][3] / 2)
                   for f in truth["images"].get(name, {"faces": []})["faces"]
                   if not f["difficult"]]
        total += len(centres)
        for key, finder in finders.items():
            found = [view.region_to_stored(r) for r in finder(view.rgb, faces)]
            found = [r for r in found if r is not None and r.label == PERSON]
            out[key]["people"] += len(found)
            out[key]["faces"] += sum(_on_person(found, x, y) for x, y in centres)
            out[key]["shares"] += [r.mask_share for r in found]
        for mp in (2, 12):
            big = make_view(_resampled(image, mp), settings.max_side)
            big_faces = faces_stack._faces(big)
            for key, finder in finders.items():
                runs = []
                for _ in range(3):  # best of three: the machine is shared
                    start = time.process_time()
                    finder(big.rgb, big_faces)
                    runs.append(time.process_time() - start)
                spent = min(runs)
                out[key][str(mp)] += spent / len(names)
                if mp == 12:
                    out[key]["12max"] = max(out[key]["12max"], spent)
                    out[key]["12each"] = [*out[key].get("12each", []), spent]
    empty = [n for n, info in truth["images"].items()
             if not info["faces"] and n != "dn_person.jpg"]
    for name in empty:  # photos without people: every person region there is false
        view = make_view(Image.open(corpus / name), settings.max_side)
        faces = faces_stack._faces(view)
        for key, finder in finders.items():
            out[key]["false"] = out[key].get("false", 0) + sum(
                r.label == PERSON for r in finder(view.rgb, faces))
    return {"photos": len(names), "faces": total, "empty": len(empty),
            "stack_extra": stack_extra(corpus, names, settings), **out}


def stack_extra(corpus: Path, names: list[str], settings: DetectorSettings) -> list[float]:
    """Per photo at 12 MP: CPU seconds of the whole detection (stored-pixel masks
    included) and ranking at level 3 with person masks, less the same with boxes."""
    from sisafs.rank import select_regions

    stacks = [DetectorStack(DetectorSettings(**{**settings.to_dict(), "text": False,
                                                "person_masks": flag}))
              for flag in (False, True)]
    for stack in stacks:
        stack.detect(Image.new("RGB", (64, 64)))
    extra = []
    for name in names:
        image = _resampled(Image.open(corpus / name), 12)
        spent = []
        for stack in stacks:
            runs = []
            for _ in range(3):
                start = time.process_time()
                select_regions(stack.detect(image), image.width, image.height, 3)
                runs.append(time.process_time() - start)
            spent.append(min(runs))
        extra.append(spent[1] - spent[0])
    return extra


def print_people(p: dict) -> None:
    keys = ("hog", "hog+faces", "masks")
    print(f"\n| people ({p['photos']} photos, {p['faces']} clear faces) | HOG boxes | "
          "HOG + face-grown boxes | person masks |\n| --- | --- | --- | --- |")
    share = {k: sum(p[k]["shares"]) / max(1, len(p[k]["shares"])) for k in keys}
    rows = [
        ("faces on a person region", *(f"{p[k]['faces']}/{p['faces']}" for k in keys)),
        ("person regions", *(p[k]["people"] for k in keys)),
        (f"person regions on the {p['empty']} photos without people",
         *(p[k]["false"] for k in keys)),
        ("mean mask share (1.0 = box)", *(f"{share[k]:.2f}" for k in keys)),
        ("regions with mask share < 0.95",
         *(sum(s < 0.95 for s in p[k]["shares"]) for k in keys)),
        ("people step, CPU s/photo at 2 MP", *(f"{p[k]['2']:.3f}" for k in keys)),
        ("people step, CPU s/photo at 12 MP", *(f"{p[k]['12']:.3f}" for k in keys)),
        ("same, slowest photo at 12 MP", *(f"{p[k]['12max']:.3f}" for k in keys)),
        ("masks minus HOG + face boxes at 12 MP, most on one photo", "", "", "{:.3f}".format(
            max(a - b for a, b in zip(p["masks"]["12each"], p["hog+faces"]["12each"],
                                      strict=True)))),
        ("whole detection + ranking at 12 MP, extra CPU s (mean; worst photo)", "", "",
         f"{sum(p['stack_extra']) / len(p['stack_extra']):.3f}; {max(p['stack_extra']):.3f}"),
    ]
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    parser.add_argument("--people-only", action="store_true", help="only the people table")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)  # "seconds per photo on one core"
    truth = json.loads((args.corpus / "faces.json").read_text())
    settings = DetectorSettings()
    if args.people_only:
        print_people(people_scores(args.corpus, truth, settings))
        return
    f = face_scores(args.corpus, truth, settings)
    ident = identity_scores(truth, face_embeddings(args.corpus, truth))
    text = text_scores(args.corpus, settings)
    t = timing(args.corpus, truth, settings)
    precision = 1 - f["fp"] / max(1, f["det"])
    rows = [
        ("faces found (non-difficult)", f"{f['easy']}/{f['easy_n']}"),
        ("faces found (difficult)", f"{f['hard']}/{f['hard_n']}"),
        ("face precision", f"{precision:.3f} ({f['fp']} false of {f['det']})"),
        ("identity: enrolled person found", f"{ident['found']}/{ident['total']} "
         f"({ident['found'] / max(1, ident['total']):.2f})"),
        ("identity: strangers exempted", f"{ident['false']}/{ident['pairs']} directed pairs"),
        ("text lines covered (vs 2000 px run)", f"{text['covered']}/{text['lines']}"),
        ("text photos with text found", f"{text['photos_with_text']}/{text['photos']}"),
        ("faces only, s/photo (mean; 12 MP)", f"{t['faces_mean']:.3f}; {t['faces_12mp']:.3f}"),
        ("full stack, s/photo (mean; 12 MP)", f"{t['stack_mean']:.3f}; {t['stack_12mp']:.3f}"),
    ]
    print("| measure | value |\n| --- | --- |")
    for key, value in rows:
        print(f"| {key} | {value} |")
    print_people(people_scores(args.corpus, truth, settings))


if __name__ == "__main__":
    main()
