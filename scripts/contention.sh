#!/bin/bash
# contention.sh [BIN]: the wall time of a default merge of tinystories-deep12
# (--remove 3, 2 threads) alone and beside one or two busy processes
# (yes > /dev/null), interleaved, as docs/benchmarks.md reports it. Run it on
# an otherwise idle machine, from the repository root, with ../shared.
set -u
BIN=${1:-build/mka-gguf}
S=../shared
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
one() { # tag busy-processes [global flags]
  local tag=$1 nb=$2 pids=()
  shift 2
  for ((i = 0; i < nb; i++)); do yes > /dev/null & pids+=($!); done
  sleep 1
  local s e rc
  s=$(date +%s.%N)
  "$BIN" "$@" merge $S/models/tinystories-deep12.gguf "$out/out.gguf" --remove 3 -t 2 \
    --calib $S/data/tinystories-train.txt --force -q > /dev/null 2> "$out/$tag.log"
  rc=$?
  e=$(date +%s.%N)
  for p in "${pids[@]}"; do kill "$p"; done
  wait 2> /dev/null
  echo "$tag busy=$nb rc=$rc wall=$(echo "$e - $s" | bc) load=$(cut -d' ' -f1 /proc/loadavg)"
}
for r in 1 2; do
  one alone-$r 0
  one busy1-$r 1
  one busy2-$r 2
  one busy1-fixed-$r 1 --adapt-threads=false
done
one alone-3 0
