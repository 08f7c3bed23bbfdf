#!/usr/bin/env python3
"""Make the watermark fixtures: embed the Stable Diffusion invisible-watermark payloads
into photos with the reference `invisible-watermark` package (imwatermark 0.2.0, method
dwtDct) and report the Python decoder's bit agreement for each payload.

This is the recipe behind category C of shared/data/provenance/provenance-fixtures.tar.gz
(its recipe/make_wm.py); the Rust tests compare their own decoder with the agreements it
prints (tests/fixtures.rs, watermark_agreements_match_the_python_decoder), so the tests
themselves run without Python.

    pip install invisible-watermark==0.2.0 opencv-python-headless pywavelets
    python3 make_wm_fixtures.py OUT_DIR photo.jpg...

Payloads, as the generators embed them:
  SDV1: ('bytes', b'StableDiffusionV1')  CompVis/stable-diffusion scripts/txt2img.py
  SDV2: ('bytes', b'SDV2')               Stability-AI/stablediffusion
  SDXL: ('bits', 48 bits of 0xB3EC907BB19E)  Stability-AI/generative-models
"""
import hashlib
import json
import os
import sys
import types

# imwatermark imports torch/onnxruntime for its rivaGan method only; dwtDct needs neither.
for m in ["torch", "onnxruntime", "onnx"]:
    sys.modules.setdefault(m, types.ModuleType(m))

import cv2  # noqa: E402
from imwatermark import WatermarkDecoder, WatermarkEncoder  # noqa: E402

SDXL_BITS = [int(b) for b in bin(0xB3EC907BB19E)[2:]]
PAYLOADS = {
    "SDV1": ("bytes", b"StableDiffusionV1"),
    "SDV2": ("bytes", b"SDV2"),
    "SDXL": ("bits", SDXL_BITS),
}


def bits_of(kind, payload):
    if kind == "bits":
        return list(payload)
    return [int(c) for byte in payload for c in format(byte, "08b")]


def agreements(img):
    out = {}
    for name, (kind, payload) in PAYLOADS.items():
        want = bits_of(kind, payload)
        got = WatermarkDecoder("bits", len(want)).decode(img, "dwtDct")
        out[name] = round(sum(int(a) == b for a, b in zip(got, want)) / len(want), 3)
    return out


def main(out_dir, photos):
    os.makedirs(out_dir, exist_ok=True)
    for src in photos:
        img = cv2.imread(src)  # BGR, as the SD scripts hand it to the encoder
        for name, (kind, payload) in PAYLOADS.items():
            enc = WatermarkEncoder()
            enc.set_watermark(kind, payload)
            marked = enc.encode(img, "dwtDct")
            ok, png = cv2.imencode(".png", marked)
            assert ok
            data = png.tobytes()
            sha16 = hashlib.sha256(data).hexdigest()[:16]
            path = os.path.join(out_dir, f"{sha16}.png")
            with open(path, "wb") as f:
                f.write(data)
            row = {"file": path, "source": os.path.basename(src), "payload": name,
                   "agreement": agreements(cv2.imread(path))}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
