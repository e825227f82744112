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
mapfile -t files < <(cd "$src" && find . -name '*.png' | sort)
printf '| images | peak RSS (MiB) | wall (s) | images/s |\n|---:|---:|---:|---:|\n'
for n in "${sizes[@]}"; do
  dir=/var/tmp/robust-stream/$n
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    for ((i = 0; i < n; i++)); do
      f=${files[$((i % ${#files[@]}))]}
      class=$(dirname "$f")
      mkdir -p "$dir/$class"
      ln "$src/$f" "$dir/$class/$i.png"
    done
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
