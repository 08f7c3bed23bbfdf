#!/usr/bin/env bash
# Peak memory of `synthscan serve --model realworld` under N concurrent uploads of one large
# JPEG (default: 256 uploads of a 7744×5164, 40-megapixel photo-like JPEG of 14 MB, drawn with
# numpy + Pillow): prints the answers by status and code and the server's peak RSS (VmHWM).
# Not part of the tests (it takes 10–20 minutes on 2 cores).
#
#   scripts/memory-test.sh [N=256] [-- serve flags...]
#   scripts/memory-test.sh 256 -- --timeout-ms 1200000 --budget-wait-ms 1200000
#   W=7360 H=4912 scripts/memory-test.sh 48          # 36 megapixels
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-256}
shift $(( $# < 1 ? $# : 1 ))
[[ "${1:-}" == "--" ]] && shift
W=${W:-7744}
H=${H:-5164}
BIN=${SYNTHSCAN_BIN:-target/release/synthscan}
[[ -x "$BIN" ]] || { echo "build first: cargo build --release"; exit 1; }
WORK=target/memory-test
mkdir -p "$WORK"
IMG=$WORK/${W}x${H}.jpg
if [[ ! -s "$IMG" ]]; then
  python3 - "$IMG" "$W" "$H" <<'PY'
import sys
import numpy as np
from PIL import Image
path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
y, x = np.mgrid[0:h, 0:w].astype(np.float32)
base = np.stack([128 + 100 * np.sin(x / 300), 128 + 100 * np.cos(y / 200),
                 128 + 60 * np.sin((x + y) / 500)], -1)
noise = np.random.default_rng(1).normal(0, 12, (h, w, 3))
Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
PY
fi

"$BIN" serve --model realworld --addr 127.0.0.1:0 "$@" > "$WORK/server.out" 2> "$WORK/server.log" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do grep -q '^listening on ' "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on http:\/\///p' "$WORK/server.out" | head -n1)
echo "flags: $*; upload ${W}x${H}, $(stat -c %s "$IMG") bytes; idle RSS: $(awk '/VmRSS/{print $2, $3}' /proc/$SERVER/status)"

python3 - "$ADDR" "$IMG" "$N" <<'PY'
import collections, http.client, json, sys, threading, time
host, port = sys.argv[1].split(":")
body = open(sys.argv[2], "rb").read()
n = int(sys.argv[3])
answers = collections.Counter()
lock = threading.Lock()
start = threading.Barrier(n)
def one():
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=3600)
        start.wait()
        c.request("POST", "/v1/detect", body=body, headers={"Content-Type": "image/jpeg"})
        r = c.getresponse()
        data = r.read()
        code = "" if r.status == 200 else " " + json.loads(data).get("code", "?")
        key = f"{r.status}{code}"
    except Exception as e:
        key = "no answer: " + type(e).__name__
    with lock:
        answers[key] += 1
t0 = time.time()
threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"{n} concurrent uploads in {time.time() - t0:.0f} s: {dict(answers)}")
PY
echo "server peak RSS (VmHWM): $(awk '/VmHWM/{print $2, $3}' /proc/$SERVER/status)"
