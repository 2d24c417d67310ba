#!/usr/bin/env bash
# Runs kiln-quant's device benchmark and the torch / bitsandbytes counterpart on one GPU and
# merges them. From the repository root, with the gpu_bench binary, these scripts and
# bitsandbytes (unpacked wheel) in DIR:
#   bash DIR/run.sh OUT_DIR
set -u
out=${1:-.}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
export PYTHONPATH="$here/../.bnb:$(pwd)/.bnb${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
"$here/gpu_bench" "$out/kiln.json" 2>&1 | tee "$out/kiln.log"
python3 "$here/bench_torch_bnb.py" "$out/torch_bnb.json" 2>&1 | tee "$out/torch_bnb.log"
python3 "$here/merge_report.py" "$out/kiln.json" "$out/torch_bnb.json" | tee "$out/report.md"
