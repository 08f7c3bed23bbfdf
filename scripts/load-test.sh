#!/usr/bin/env bash
# Load test of `synthscan serve` on 127.0.0.1 with wrk (Debian package `wrk`): N connections
# for D seconds posting one 32x32 JPEG, then a one-request-at-a-time baseline; prints wrk's
# report, the mean batch size from /metrics and the server's peak RSS. Not part of the tests.
#
#   scripts/load-test.sh [CONNECTIONS=64] [SECONDS=60] [BASELINE_SECONDS=20] [-- serve flags...]
#
# Run it with `nice -n 10` on a shared machine; the numbers then include that machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-64}
SECS=${2:-60}
BASE_SECS=${3:-20}
shift $(( $# < 3 ? $# : 3 ))
[[ "${1:-}" == "--" ]] && shift
command -v wrk >/dev/null || { echo "wrk is absent: apt-get install wrk"; exit 1; }
BIN=target/release/synthscan
[[ -x "$BIN" ]] || { echo "build first: cargo build --release"; exit 1; }
WORK=target/load-test
mkdir -p "$WORK"

# The upload: $IMG when set (e.g. a photo for a model with a larger input), else a real 32x32
# CIFAKE JPEG from the shared data.
IMG=${IMG:-$WORK/img.jpg}
if [[ ! -s "$IMG" && "$IMG" == "$WORK/img.jpg" && -f ../shared/data/cifake/cifake-test.tar.gz ]]; then
    member=$(tar -tzf ../shared/data/cifake/cifake-test.tar.gz | grep -m1 '^test/REAL/.*\.jpg$' || true)
    tar -xzf ../shared/data/cifake/cifake-test.tar.gz -C "$WORK" "$member"
    cp "$WORK/$member" "$IMG"
fi
[[ -s "$IMG" ]] || { echo "no 32x32 JPEG: put one at $IMG"; exit 1; }

cat > "$WORK/post.lua" <<EOF
local f = assert(io.open("$(realpath "$IMG")", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
EOF

"$BIN" serve --addr 127.0.0.1:0 "$@" > "$WORK/server.out" 2> "$WORK/server.log" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q '^listening on ' "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/server.out" | head -n1)
echo "server $URL (pid $SERVER), flags: $*; image $(stat -c %s "$IMG") bytes; $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# "passes images inference-seconds" from the batch-size and inference-time histograms.
batch_counts() {
    curl -s "$URL/metrics" | awk '/^synthscan_batch_size_sum/{s=$2} /^synthscan_batch_size_count/{c=$2}
        /^synthscan_inference_seconds_sum/{t=$2} END {print c+0, s+0, t+0}'
}
report_batches() { # before-counts after-counts
    awk -v c0="$1" -v s0="$2" -v t0="$3" -v c1="$4" -v s1="$5" -v t1="$6" 'BEGIN {c=c1-c0; s=s1-s0; t=t1-t0;
        printf "forward passes %d, images %d, mean batch size %.2f, model time %.1f s (%.3f ms per pass, %.3f ms per image)\n",
            c, s, (c ? s/c : 0), t, (c ? 1000*t/c : 0), (s ? 1000*t/s : 0)}'
}

echo "== baseline: 1 connection, ${BASE_SECS}s =="
read -r c0 s0 t0 < <(batch_counts)
wrk -t1 -c1 -d"${BASE_SECS}s" --latency -s "$WORK/post.lua" "$URL/v1/detect"
read -r c1 s1 t1 < <(batch_counts)
report_batches "$c0" "$s0" "$t0" "$c1" "$s1" "$t1"
echo "== load: $CONNS connections, ${SECS}s =="
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/post.lua" "$URL/v1/detect"
read -r c2 s2 t2 < <(batch_counts)
report_batches "$c1" "$s1" "$t1" "$c2" "$s2" "$t2"
echo "non-200 answers by status:"
curl -s "$URL/metrics" | grep '^synthscan_http_requests_total{route="/v1/detect"' || true
echo "server peak RSS: $(awk '/VmHWM/{print $2, $3}' /proc/$SERVER/status)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
