#!/bin/bash
# The adapt experiment of docs/experiments.md ("Adapting to your images"): the built-in realworld
# model (trained on realworld-train + realworld-extra) adapted with 50 and 200 labelled images of
# a collection it never saw (realworld-modern: 25+25, 100+100) and of human-made art (50, 200
# REAL), reported on the rest of each collection; and a corrections folder with its labels
# swapped, which the guard must refuse.
#   scripts/adapt-experiment.sh [SHARED_DIR (../shared)] [WORK_DIR (target/adapt)]
set -euo pipefail
SHARED=${1:-../shared}; WORK=${2:-target/adapt}
S=${S:-target/release/synthscan}
D=$WORK/data; mkdir -p "$D"
for c in realworld-train realworld-extra realworld-modern; do
  [ -d "$D/$c" ] || { mkdir -p "$D/$c" && tar -xzf "$SHARED/data/realworld/$c.tar.gz" -C "$D/$c"; }
done
[ -d "$D/art" ] || { mkdir -p "$D/art" && tar -xzf "$SHARED/data/art/art-train.tar.gz" -C "$D/art"; }
python3 - "$D" "$WORK" <<'PY'
import os, random, shutil, sys
d, work = sys.argv[1], sys.argv[2]
rng = random.Random(1)
def put(name, cls, src, files):
    os.makedirs(f'{work}/{name}/{cls}', exist_ok=True)
    for f in files: shutil.copy(f'{src}/{f}', f'{work}/{name}/{cls}/{f}')
for cls in ['REAL', 'FAKE']:
    src = f'{d}/realworld-modern/train/{cls}'
    files = sorted(os.listdir(src)); rng.shuffle(files)
    put('m50', cls, src, files[:25]); put('m200', cls, src, files[:100]); put('mrest', cls, src, files[100:])
src = f'{d}/art/train/REAL'
files = sorted(os.listdir(src)); rng.shuffle(files)
put('a50', 'REAL', src, files[:50]); put('a200', 'REAL', src, files[:200]); put('arest', 'REAL', src, files[200:])
os.makedirs(f'{work}/m200flip', exist_ok=True)
for a, b in [('REAL', 'FAKE'), ('FAKE', 'REAL')]:
    if not os.path.exists(f'{work}/m200flip/{b}'):
        os.symlink(os.path.abspath(f'{work}/m200/{a}'), f'{work}/m200flip/{b}')
PY
B="--base-data $D/realworld-train --base-data $D/realworld-extra"
OUT=$WORK/out; rm -rf "$OUT"; mkdir -p "$OUT"
for set in m50 m200 a50 a200; do
  echo "== $set"
  $S adapt --model realworld --data "$WORK/$set" $B --out "$OUT/$set.synthscan" --no-cache --report "$OUT/$set.json" || echo "exit $?"
done
echo "== a200 --force"
$S adapt --model realworld --data "$WORK/a200" $B --out "$OUT/a200f.synthscan" --no-cache --force | tail -1
echo "== m200flip (labels swapped: must be refused)"
$S adapt --model realworld --data "$WORK/m200flip" $B --out "$OUT/m200flip.synthscan" --no-cache || echo "exit $?"
ev() { $S evaluate --model "$1" --data "$2" --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('$1 on $2: accuracy %.4f ROC-AUC %.4f false alarms %.4f threshold %.3f' % (d['accuracy'], d['roc_auc'], d['false_alarm_rate'], d['threshold']))"; }
for m in realworld "$OUT/m50.synthscan" "$OUT/m200.synthscan"; do ev "$m" "$WORK/mrest"; done
for m in realworld "$OUT/a50.synthscan" "$OUT/a200f.synthscan"; do ev "$m" "$WORK/arest"; done
