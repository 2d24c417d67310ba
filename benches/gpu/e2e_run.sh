#!/usr/bin/env bash
# The end-to-end benchmark (kiln vs transformers) on one GPU; see e2e.py for what it measures.
# From the repository root, with the kiln release binary (e.g. in .device/), the slim
# bitsandbytes wheel unpacked in .bnb/ and .cache/kiln/tokenizers/llama3_1 present:
#   bash benches/gpu/e2e_run.sh --kiln .device/kiln [--shapes 1b,8b] [more e2e.py flags]
# Results go to $OUT (e2e.json, e2e.md, logs/), else ./e2e-out.
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$(pwd)/e2e-out}
mkdir -p "$out"
export OUT="$out"
export PYTHONPATH="$(pwd)/.bnb${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
for ((i = 1; i <= $#; i++)); do
    if [[ ${!i} == --kiln ]]; then
        j=$((i + 1))
        [[ -f ${!j} ]] && chmod +x "${!j}"
    fi
done
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 "$here/e2e.py" --out "$out" "$@" 2>&1 | tee "$out/e2e.log"
