#!/usr/bin/env bash
# kiln's GPU benchmark suite, as packed by `cargo xtask bench --gpu-pack DIR`.
#
#   bash DIR/run.sh OUT [--quick] [quant] [flash]
#
# quant: kiln-quant's device kernels (gpu_bench) and torch f16 / bitsandbytes
#        (bench_torch_bnb.py) into OUT/quant, merged by merge_report.py into OUT/quant/report.md.
# flash: kiln's flash attention (flash_device) and torch SDPA (flash_torch.py) into OUT/flash,
#        merged by flash_merge.py into OUT/flash/flash_report.md.
# Both suites run when none is named. --quick: one timing per table (a smoke test).
#
# OUT/run.txt records the date, card, driver, Python / torch / bitsandbytes versions and the
# commit the pack was built from (key=value lines); OUT/nvidia-smi.txt the full `nvidia-smi`;
# OUT/status.txt one line per step: `STEP STATUS` (the exit code, or `skipped: why`). A step
# that fails is recorded and the run goes on. Exit status: 0 when every step passed, else 1.
#
# Environment: PYTHON (default python3) runs the references; KILN_GPU_STEP_TIMEOUT is the limit
# of one step in seconds (default 5400, 0 for none). bitsandbytes may be an unpacked wheel in
# DIR/.bnb, DIR/../.bnb or ./.bnb.
set -u

usage() {
  echo "usage: bash run.sh OUT [--quick] [quant] [flash]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
case $1 in -*) usage ;; esac
out=$1
shift
quick=""
suites=""
for a in "$@"; do
  case $a in
    --quick) quick=--quick ;;
    quant | flash) suites="$suites $a" ;;
    *) usage ;;
  esac
done
[ -n "$suites" ] || suites=" quant flash"

here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
limit=${KILN_GPU_STEP_TIMEOUT:-5400}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
export PYTHONPATH="$here/.bnb:$here/../.bnb:$PWD/.bnb${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
status="$out/status.txt"
: >"$status"
failed=0

# record STEP STATUS...
record() {
  local name=$1
  shift
  echo "$name $*" >>"$status"
  case $1 in 0 | skipped*) ;; *) failed=1 ;; esac
  echo "== $name: $*"
}

# step NAME LOG COMMAND...: runs COMMAND (with the time limit), its output into LOG and here.
step() {
  local name=$1 log=$2 rc
  shift 2
  echo "== $name: $*"
  if [ "$limit" != 0 ] && command -v timeout >/dev/null 2>&1; then
    timeout "$limit" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  else
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  fi
  record "$name" "$rc"
}

# The last line a Python snippet prints, empty when it fails.
pyline() {
  "$py" -c "$1" 2>/dev/null | tail -n 1
}

nvidia-smi >"$out/nvidia-smi.txt" 2>&1
gpu_line=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
IFS=, read -r gpu_name gpu_driver gpu_memory <<<"$gpu_line"
trim() { sed -e 's/^ *//' -e 's/ *$//' <<<"${1:-}"; }
python_version=$(pyline 'import sys; print(sys.version.split()[0])')
torch_version=$(pyline 'import torch; print(torch.__version__)')
torch_cuda=$(pyline 'import torch; print(torch.version.cuda)')
bnb_version=$(pyline 'import bitsandbytes; print(bitsandbytes.__version__)')
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "gpu=$(trim "${gpu_name:-}")"
  echo "driver=$(trim "${gpu_driver:-}")"
  echo "memory=$(trim "${gpu_memory:-}")"
  echo "gpu_count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')"
  echo "python=$python_version"
  echo "torch=$torch_version"
  echo "torch_cuda=$torch_cuda"
  echo "bitsandbytes=$bnb_version"
  echo "quick=${quick:+yes}"
  if [ -f "$here/pack.txt" ]; then cat "$here/pack.txt"; fi
} >"$out/run.txt"
cat "$out/run.txt"

if [[ $suites == *quant* ]]; then
  q="$out/quant"
  mkdir -p "$q"
  rm -f "$q/kiln.json" "$q/torch_bnb.json" "$q/report.md"
  step quant/kiln "$q/kiln.log" "$here/gpu_bench" "$q/kiln.json" ${quick:+"$quick"}
  if [ -z "$torch_version" ]; then
    record quant/torch_bnb "skipped: torch not importable by $py"
  elif [ -z "$bnb_version" ]; then
    record quant/torch_bnb "skipped: bitsandbytes not importable by $py"
  else
    step quant/torch_bnb "$q/torch_bnb.log" "$py" "$here/bench_torch_bnb.py" "$q/torch_bnb.json" ${quick:+"$quick"}
  fi
  if [ -f "$q/kiln.json" ] && [ -f "$q/torch_bnb.json" ] && [ -n "$python_version" ]; then
    "$py" "$here/merge_report.py" "$q/kiln.json" "$q/torch_bnb.json" >"$q/report.md" 2>"$q/merge.log"
    record quant/merge "$?"
  else
    record quant/merge "skipped: needs kiln.json, torch_bnb.json and Python"
  fi
fi

if [[ $suites == *flash* ]]; then
  f="$out/flash"
  mkdir -p "$f"
  rm -f "$f/flash_kiln.json" "$f/flash_torch.json" "$f/flash_report.md"
  step flash/kiln "$f/flash_kiln.log" "$here/flash_device" --out "$f/flash_kiln.json" ${quick:+"$quick"}
  if [ -z "$torch_version" ]; then
    record flash/torch "skipped: torch not importable by $py"
  else
    step flash/torch "$f/flash_torch.log" "$py" "$here/flash_torch.py" --out "$f/flash_torch.json" ${quick:+"$quick"}
  fi
  if [ -f "$f/flash_kiln.json" ] && [ -f "$f/flash_torch.json" ] && [ -n "$python_version" ]; then
    "$py" "$here/flash_merge.py" "$f/flash_kiln.json" "$f/flash_torch.json" --out "$f/flash_report.md" >"$f/merge.log" 2>&1
    record flash/merge "$?"
  else
    record flash/merge "skipped: needs flash_kiln.json, flash_torch.json and Python"
  fi
fi

echo "== steps (also in $status)"
cat "$status"
exit "$failed"
