#!/bin/bash
# Copy next to the flash_device binary (cargo build -p kiln-benches --features cuda --bin flash_device,
# stripped) and flash_torch.py / flash_merge.py, e.g. into .device/, and run it on the GPU machine.
# kiln flash kernels vs torch on the GPU machine: `run.sh [all|kiln|torch] [--quick]`.
# Results (JSON, logs, flash_report.md) go to $OUT (or .device/out).
set -u
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/out}"
part="${1:-all}"; [ $# -gt 0 ] && shift
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
if [ "$part" != torch ]; then
  "$here/flash_device" --out "$out/flash_kiln.json" "$@" > "$out/flash_kiln.log" 2>&1
  echo "flash_device exit $?"; grep -E "^(FAIL|correctness|timing kernel|pipelined)" "$out/flash_kiln.log" | head -40
fi
if [ "$part" != kiln ]; then
  python3 "$here/flash_torch.py" --out "$out/flash_torch.json" "$@" > "$out/flash_torch.log" 2>&1
  echo "flash_torch exit $?"; tail -2 "$out/flash_torch.log"
fi
if [ -f "$out/flash_kiln.json" ] && [ -f "$out/flash_torch.json" ]; then
  python3 "$here/flash_merge.py" "$out/flash_kiln.json" "$out/flash_torch.json" --out "$out/flash_report.md"
fi
