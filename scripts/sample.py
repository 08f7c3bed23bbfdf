#!/usr/bin/env python3
"""Copy a seeded random sample of N images per class (REAL/, FAKE/) of a labelled folder.

  python3 scripts/sample.py target/data/cifake/test target/data/cifake-sub 500
(the 1,000-image CIFAKE sample of models/realworld.MODEL_CARD.md; seed 0)
"""
import os, random, shutil, sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    random.seed(0)
    for c in ("REAL", "FAKE"):
        os.makedirs(os.path.join(dst, c), exist_ok=True)
        names = sorted(os.listdir(os.path.join(src, c)))
        for name in random.sample(names, n):
            shutil.copy(os.path.join(src, c, name), os.path.join(dst, c, name))
    print(f"{2 * n} images → {dst}")


if __name__ == "__main__":
    main()
