#!/usr/bin/env bash
# Build engine.plan from model.onnx on this @@DEVICE@@.
# TensorRT engines are specific to the GPU and the TensorRT version that built them,
# so they are built here, on the device. Expected: JetPack @@JETPACK@@ (L4T R@@L4T@@),
# TensorRT @@TENSORRT@@ (@@TYPING@@ typing), CUDA @@CUDA@@. Written by gencompress @@GENCOMPRESS_VERSION@@.
#
#   ./build_engine.sh                      # trtexec (ships with JetPack)
#   ./build_engine.sh --dry-run            # print the trtexec command, run nothing
#   USE_GENCOMPRESS=1 ./build_engine.sh    # gencompress's TensorRT builder, when it is installed here
set -euo pipefail
cd "$(dirname "$0")"

usage="usage: ./build_engine.sh [--dry-run] [--help]
  builds engine.plan from model.onnx with trtexec (TRTEXEC=PATH names another trtexec);
  --dry-run prints the trtexec command instead of running it;
  USE_GENCOMPRESS=1 builds with gencompress's TensorRT builder instead"
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "error: unknown argument $arg" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done

expected="@@TENSORRT_MM@@"
# shellcheck disable=SC2016  # ${Version} is dpkg-query's format field, not a shell variable
found="$(dpkg-query -W -f='${Version}' tensorrt 2>/dev/null || true)"
if [ -n "$found" ] && [ "${found#"$expected"}" = "$found" ]; then
  echo "warning: this bundle was written for TensorRT $expected (JetPack @@JETPACK@@), found $found;" >&2
  echo "         the trtexec flags below may need adjusting (see README.md)" >&2
fi

if [ "${USE_GENCOMPRESS:-0}" = "1" ] && [ "$dry_run" = "0" ]; then
  if ! command -v gencompress >/dev/null 2>&1; then
    echo "error: USE_GENCOMPRESS=1 but gencompress is not installed here" >&2
    exit 2
  fi
  gencompress export . --format engine --dynamic-batch @@PROFILE@@ --out engine-bundle
  cp engine-bundle/engine.plan engine.plan
  echo "wrote engine.plan (and engine-bundle/ with its manifest)"
  exit 0
fi

TRTEXEC="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"
if [ ! -x "$TRTEXEC" ]; then
  TRTEXEC="$(command -v trtexec || true)"
fi
if [ -z "$TRTEXEC" ]; then
  if [ "$dry_run" = "0" ]; then
    echo "error: trtexec not found; install JetPack's TensorRT (sudo apt install nvidia-jetpack) or set TRTEXEC" >&2
    exit 2
  fi
  TRTEXEC=trtexec
fi

# Precision @@PRECISION@@ (@@FLOAT_LAYERS@@); batch profile MIN:OPT:MAX = @@PROFILE@@ on input '@@INPUT@@'.
build_command=(
  @@BUILD_COMMAND@@
)
if [ "$dry_run" = "1" ]; then
  echo "${build_command[*]}"
  exit 0
fi
"${build_command[@]}"
echo "wrote engine.plan; time it with ./run_bench.sh"
