#!/usr/bin/env python3
"""Re-save every image of a labelled folder (REAL/, FAKE/) in another container, keeping names
(with the new extension), labels and pixel size: the check that a detector's verdict does not
depend on the file format.

  python3 scripts/resave.py SRC DST png        # lossless PNG
  python3 scripts/resave.py SRC DST jpeg60     # JPEG quality 60 (any jpegNN works)

Needs Pillow (pip install pillow).
"""
import os, sys
from PIL import Image


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, dst, fmt = sys.argv[1:]
    if fmt == "png":
        ext, kwargs = ".png", {"format": "PNG"}
    elif fmt.startswith("jpeg") and fmt[4:].isdigit():
        ext, kwargs = ".jpg", {"format": "JPEG", "quality": int(fmt[4:])}
    else:
        sys.exit(f"unknown format {fmt!r}: png or jpegNN")
    n = 0
    for label in ("REAL", "FAKE"):
        sdir = os.path.join(src, label)
        if not os.path.isdir(sdir):
            continue
        ddir = os.path.join(dst, label)
        os.makedirs(ddir, exist_ok=True)
        for name in sorted(os.listdir(sdir)):
            with Image.open(os.path.join(sdir, name)) as im:
                im.convert("RGB").save(os.path.join(ddir, os.path.splitext(name)[0] + ext), **kwargs)
            n += 1
    print(f"{n} images → {dst} ({fmt})")


if __name__ == "__main__":
    main()
