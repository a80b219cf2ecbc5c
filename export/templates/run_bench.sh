#!/usr/bin/env bash
# Time engine.plan on this @@DEVICE@@ with trtexec, one run per batch size.
# For stable numbers first pick the power mode and fix the clocks: sudo nvpmodel -m MODE && sudo jetson_clocks
# (mode numbers differ per board and JetPack: see /etc/nvpmodel.conf; `sudo nvpmodel -q` shows the current one).
# Set TEGRASTATS=1 to log power and utilisation alongside (bench/tegrastats.log).
set -euo pipefail
cd "$(dirname "$0")"

usage="usage: ./run_bench.sh [--dry-run] [--help]
  times engine.plan with trtexec at batch sizes @@BATCHES@@ (logs in bench/; TRTEXEC=PATH names another trtexec);
  --dry-run prints the trtexec commands instead of running them; TEGRASTATS=1 also logs power"
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "error: unknown argument $arg" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done

TRTEXEC="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"
if [ ! -x "$TRTEXEC" ]; then
  TRTEXEC="$(command -v trtexec || true)"
fi
if [ -z "$TRTEXEC" ]; then
  if [ "$dry_run" = "0" ]; then
    echo "error: trtexec not found; install JetPack's TensorRT or set TRTEXEC" >&2
    exit 2
  fi
  TRTEXEC=trtexec
fi

set_bench_command() {  # the trtexec command that times batch $1, into the array bench_command
  local batch="$1"
  bench_command=(
    @@BENCH_COMMAND@@
    --exportTimes="bench/times_b${batch}.json"
  )
}
if [ "$dry_run" = "1" ]; then
  for batch in @@BATCHES@@; do
    set_bench_command "$batch"
    echo "${bench_command[*]}"
  done
  exit 0
fi
if [ ! -f engine.plan ]; then
  echo "error: engine.plan not found; run ./build_engine.sh first" >&2
  exit 2
fi

mkdir -p bench
# Numbers mean little without the power mode and versions they were taken under.
{
  echo "target: @@TARGET@@ (expected JetPack @@JETPACK@@, TensorRT @@TENSORRT@@)"
  cat /etc/nv_tegra_release 2>/dev/null || true
  nvpmodel -q 2>/dev/null || true
} > bench/conditions.txt
stats_pid=""
if [ "${TEGRASTATS:-0}" = "1" ] && command -v tegrastats >/dev/null 2>&1; then
  tegrastats --interval 100 --logfile bench/tegrastats.log &
  stats_pid=$!
fi

for batch in @@BATCHES@@; do
  echo "== batch ${batch}"
  set_bench_command "$batch"
  "${bench_command[@]}" | tee "bench/trtexec_b${batch}.log"
done

if [ -n "$stats_pid" ]; then
  kill "$stats_pid"
fi
echo "logs in bench/ (GPU compute time: the 'GPU Compute Time' lines of bench/trtexec_b*.log)"
