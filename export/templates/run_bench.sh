#!/usr/bin/env bash
# Time engine.plan on this @@DEVICE@@ with trtexec, one run per batch size.
# For stable numbers first pick the power mode and fix the clocks: sudo nvpmodel -m MODE && sudo jetson_clocks
# (mode numbers differ per board and JetPack: see /etc/nvpmodel.conf; `sudo nvpmodel -q` shows the current one).
# Set TEGRASTATS=1 to log power and utilisation alongside (bench/tegrastats.log).
set -euo pipefail
cd "$(dirname "$0")"

TRTEXEC="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"
if [ ! -x "$TRTEXEC" ]; then
  TRTEXEC="$(command -v trtexec || true)"
fi
if [ -z "$TRTEXEC" ]; then
  echo "error: trtexec not found; install JetPack's TensorRT or set TRTEXEC" >&2
  exit 2
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
  @@BENCH_COMMAND@@ \
    --exportTimes="bench/times_b${batch}.json" | tee "bench/trtexec_b${batch}.log"
done

if [ -n "$stats_pid" ]; then
  kill "$stats_pid"
fi
echo "logs in bench/ (GPU compute time: the 'GPU Compute Time' lines of bench/trtexec_b*.log)"
