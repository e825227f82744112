#!/usr/bin/env bash
# Peak memory and throughput of `robust eval` streaming a large ImageFolder (issue 18).
#
#   bash benches/stream_memory.sh [SIZES...]        # default: 1000 10000 50000
#
# Builds an ImageFolder of N PNG files under /var/tmp/robust-stream (hard links to the 30
# real MNIST PNGs of datasets/mnist-folder, named by index, in their class folders), then
# runs FGSM at eps 0 and 0.1 on the demo model on the CPU and reports, from GNU time, the
# peak resident set and images per second. Peak memory should not grow with N beyond the
# per-sample bookkeeping (a few dozen bytes per sample: labels, paths, digests, outcomes).
set -euo pipefail
cd "$(dirname "$0")/.."
robust=./target/release/robust
[ -x "$robust" ] || { echo "build first: cargo build --release --workspace" >&2; exit 2; }
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000 50000)
src=datasets/mnist-folder
printf '| images | peak RSS (MiB) | wall (s) | images/s |\n|---:|---:|---:|---:|\n'
for n in "${sizes[@]}"; do
  dir=/var/tmp/robust-stream/$n
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"
    python3 - "$src" "$dir" "$n" <<'PY'
import os, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = sorted(os.path.relpath(os.path.join(r, f), src)
               for r, _, fs in os.walk(src) for f in fs if f.endswith(".png"))
for i in range(n):
    f = files[i % len(files)]
    d = os.path.join(dst, os.path.dirname(f))
    os.makedirs(d, exist_ok=True)
    os.link(os.path.join(src, f), os.path.join(d, f"{i}.png"))
open(os.path.join(dst, ".complete"), "w").close()
PY
  fi
  log=$(mktemp)
  /usr/bin/time -v "$robust" eval --model models/mnist-cnn/model.onnx --mean 0.1307 --std 0.3081 \
    --data "$dir" --attack fgsm --eps 0,0.1 --device cpu --quiet --out /var/tmp/robust-stream/out-$n \
    >/dev/null 2>"$log"
  rss=$(awk -F: '/Maximum resident set size/ {print $2}' "$log")
  wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$log" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  awk -v n="$n" -v r="$rss" -v w="$wall" 'BEGIN { printf "| %d | %.0f | %.1f | %.0f |\n", n, r/1024, w, n/w }'
  rm -f "$log"
done
