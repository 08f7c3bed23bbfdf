#!/usr/bin/env bash
# Crash test of training: trains a tiny experiment once uninterrupted, then again while
# `kill -9`-ing it at seeded random moments (at least KILLS times), resuming after each kill,
# and compares the final metrics.csv (without the timing columns) and model.synthscan with
# the uninterrupted run's. The net has batch-norm (its running statistics are moved in part
# order by each data-parallel step, whatever threads run the parts: train::step); BATCH_NORM=false
# trains it without.
#
#   scripts/kill-test.sh                 # 20 kills, seed 1
#   KILLS=40 SEED=7 scripts/kill-test.sh
#   BATCH_NORM=false scripts/kill-test.sh
#   SYNTHSCAN_BIN=target/release/synthscan scripts/kill-test.sh   # skip the build
#
# Needs python3 with Pillow (to draw the data). Not run by CI (tests/resume.rs is the short
# version); exits 0 only when every resume worked and the results are identical.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-20}
BATCH_NORM=${BATCH_NORM:-true}
SEED=${SEED:-1}
BIN=${SYNTHSCAN_BIN:-}
if [[ -z "$BIN" ]]; then
  cargo build --release --quiet
  BIN=target/release/synthscan
fi
BIN=$(realpath "$BIN")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/synthscan-kill-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

python3 - <<'PY'
import os, random
from PIL import Image
r = random.Random(1)
for cls, fake in (("REAL", 0), ("FAKE", 1)):
    os.makedirs(f"data/{cls}", exist_ok=True)
    for i in range(300):
        a, b, c = (r.randrange(200) for _ in range(3))
        s = 32
        im = Image.new("RGB", (s, s))
        im.putdata([tuple(min(255, v + (r.randrange(90) if fake else 0))
                          for v in (a + x * 40 // s, b + y * 40 // s, c + (x + y) * 20 // s))
                    for y in range(s) for x in range(s)])
        im.save(f"data/{cls}/{i:04}.png")
PY
cat > exp.yaml <<'YAML'
name: kill
seed: 11
model:
  arch: cnn
  stem: 0
  stages: [{channels: 16}, {channels: 32}]
  batch_norm: BATCH_NORM
  activation: relu
  global_pool: avg
input_size: 32
epochs: 8
batch_size: 32
optimizer: {kind: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0005}
schedule: {kind: one-cycle, warmup_fraction: 0.2}
augment: {hflip: true}
ema: {decay: 0.9}
early_stopping: {patience: 5}
data: {val_fraction: 0.2}
YAML
sed -i "s/BATCH_NORM/$BATCH_NORM/" exp.yaml

start=$(date +%s.%N)
"$BIN" train --quiet --config exp.yaml --data data --out whole >/dev/null
whole_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "uninterrupted run: ${whole_s}s"
# Kill moments: uniform in [20 ms, 2/KILLS of the whole run], seeded: the kills spread over the run.
max_ms=$(echo "$whole_s * 2000 / $KILLS" | bc | cut -d. -f1)
(( max_ms < 50 )) && max_ms=50
RANDOM=$SEED

kills=0 resumes=0 restarts=0 failures=0 attempts=0
run_dir=killed/kill
done_ok=no
while (( attempts < KILLS * 20 )); do
  attempts=$((attempts + 1))
  if [[ -f $run_dir/run.json ]]; then
    resumes=$((resumes + 1))
    "$BIN" train --quiet --resume "$run_dir" >/dev/null 2>err.txt &
  else
    # Killed before the run folder existed as one: start afresh.
    rm -rf killed
    (( attempts > 1 )) && restarts=$((restarts + 1))
    "$BIN" train --quiet --config exp.yaml --data data --out killed >/dev/null 2>err.txt &
  fi
  pid=$!
  if (( kills < KILLS )); then
    ms=$(( 20 + (RANDOM * 32768 + RANDOM) % max_ms ))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    if kill -9 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      kills=$((kills + 1))
      continue
    fi
  fi
  if wait "$pid"; then
    done_ok=yes
    break
  fi
  failures=$((failures + 1))
  echo "failure: $(cat err.txt)"
done

# A model file past its checksum (54 bytes in), with burn's parameter ids (drawn afresh by each
# process, no part of the weights) masked.
weights() {
  python3 -c '
import sys, re
b = open(sys.argv[1], "rb").read()[54:]
sys.stdout.buffer.write(re.sub(rb"param_id\x1b.{8}", b"param_id", b, flags=re.S))' "$1"
}
identical=no
if [[ $done_ok == yes ]]; then
  strip() { rev "$1" | cut -d, -f3- | rev; }
  if diff <(strip whole/kill/metrics.csv) <(strip $run_dir/metrics.csv) >/dev/null &&
     cmp -s <(weights whole/kill/model.synthscan) <(weights $run_dir/model.synthscan); then
    identical=yes
  else
    diff <(strip whole/kill/metrics.csv) <(strip $run_dir/metrics.csv) || true
    cmp <(weights whole/kill/model.synthscan) <(weights $run_dir/model.synthscan) || true
  fi
fi
echo "kills: $kills, resumes: $resumes, fresh restarts: $restarts, failures: $failures, finished: $done_ok"
echo "identical metrics.csv (timing columns aside) and model.synthscan: $identical"
[[ $identical == yes && $failures == 0 && $kills -ge $KILLS ]]
