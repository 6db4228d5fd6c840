#!/bin/bash
# Session 7 CV runs, one after another on one core; each skips if its cv.json exists (resumable).
# usage: bash docs/audio2expr/session7/experiments/queue.sh NAME "ARGS" [NAME "ARGS" ...]
export OMP_NUM_THREADS=1 PYTHONPATH=$(pwd)
while [ $# -ge 2 ]; do
  name=$1; shift; a=$1; shift
  [ -f runs/s7/$name/cv.json ] && continue
  mkdir -p runs/s7/$name
  echo "$(date -u +%T) start $name: $a"
  python docs/audio2expr/session7/experiments/cv7.py --out runs/s7/$name $a > runs/s7/$name/log 2>&1
  echo "$(date -u +%T) done $name: $(tail -1 runs/s7/$name/log)"
done
