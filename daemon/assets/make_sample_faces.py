"""Select the bundled sample faces from FER2013's validation split (how the assets were made).

    python -m daemon.assets.make_sample_faces /path/to/fer2013 [--per-class 4]

For each class it walks ``<fer>/val/<class>/*.jpg`` in name order and keeps the first images on
which OpenCV's Haar frontal-face cascade finds exactly one face when the 48x48 image is upscaled
into a plain 640x480 frame, at every face size the sample source draws (so the animated stream is
detected frame after frame). Low-contrast images are skipped. The chosen images are written
unchanged (lossless PNG) to ``daemon/assets/sample_faces/<class>/NN.png`` and listed, with their
original names, in ``sample_faces/SOURCES.txt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from daemon.detect import default_cascade_path

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
HERE = Path(__file__).resolve().parent
# Face sides (pixels) the sample source draws: 200 +-5 % alone, about 160-200 beside others.
CHECK_SIDES = (160, 180, 200, 210)
MIN_STD = 20.0


def _detect_count(cascade: cv2.CascadeClassifier, face: np.ndarray, side: int) -> int:
    frame = np.full((480, 640), 96, np.uint8)
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    y0, x0 = (480 - side) // 2, (640 - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = big
    found = cascade.detectMultiScale(frame, scaleFactor=1.1, minNeighbors=5, minSize=(60, 60))
    return len(found)


def select(fer_dir: Path, per_class: int) -> dict[str, list[Path]]:
    cascade = cv2.CascadeClassifier(str(default_cascade_path()))
    if cascade.empty():
        raise SystemExit("OpenCV's haarcascade_frontalface_default.xml is missing")
    chosen: dict[str, list[Path]] = {}
    for name in CLASSES:
        picked: list[Path] = []
        for path in sorted((fer_dir / "val" / name).glob("*.jpg")):
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is None or img.shape != (48, 48) or img.std() < MIN_STD:
                continue
            if all(_detect_count(cascade, img, side) == 1 for side in CHECK_SIDES):
                picked.append(path)
                if len(picked) == per_class:
                    break
        if len(picked) < per_class:
            raise SystemExit(f"only {len(picked)} usable {name} faces in {fer_dir / 'val' / name}")
        chosen[name] = picked
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fer_dir", type=Path, help="FER2013 folder with val/<class>/*.jpg")
    parser.add_argument("--per-class", type=int, default=4, help="faces per class (default: 4)")
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "sample_faces",
        help="output folder (default: sample_faces beside this script)",
    )
    args = parser.parse_args(argv)
    chosen = select(args.fer_dir, args.per_class)
    lines = []
    for name, paths in chosen.items():
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        for i, path in enumerate(paths):
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise SystemExit(f"cannot read {path}")
            cv2.imwrite(str(folder / f"{i:02d}.png"), img)
            lines.append(f"{name}/{i:02d}.png <- FER2013 val/{name}/{path.name}")
    (args.out / "SOURCES.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
