#!/usr/bin/env python3
"""Make a labelled folder of large JPEGs (camera-photo sized) for end-to-end speed checks.

Each source image (a labelled folder: REAL/ and FAKE/, e.g. an extracted real-world set from
../shared/data/realworld) is upscaled with Pillow (bicubic) until it has at least --megapixels
megapixels, keeping its aspect ratio, and written as JPEG (quality --quality, 4:2:0) under
OUT/REAL and OUT/FAKE. Write OUT outside the repository: the files are large.

    scripts/make-large-jpegs.py SRC_DIR OUT_DIR [--count 200] [--megapixels 12]

--count images in all, half from each class (the first ones in sorted order).
"""

import argparse
import math
import os
import sys

from PIL import Image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="a folder with REAL/ and FAKE/ (or a parent whose train/ has them)")
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--quality", type=int, default=90)
    args = ap.parse_args()
    src = args.src
    if not os.path.isdir(os.path.join(src, "REAL")) and os.path.isdir(os.path.join(src, "train")):
        src = os.path.join(src, "train")
    target = args.megapixels * 1e6
    per_class = args.count // 2
    for cls in ("REAL", "FAKE"):
        names = sorted(os.listdir(os.path.join(src, cls)))[:per_class]
        os.makedirs(os.path.join(args.out, cls), exist_ok=True)
        for name in names:
            with Image.open(os.path.join(src, cls, name)) as im:
                im = im.convert("RGB")
                w, h = im.size
                k = math.sqrt(target / (w * h))
                size = (math.ceil(w * k), math.ceil(h * k))
                big = im.resize(size, Image.Resampling.BICUBIC)
            stem = os.path.splitext(name)[0]
            big.save(os.path.join(args.out, cls, stem + ".jpg"), quality=args.quality)
        print(f"{cls}: {len(names)} images", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
