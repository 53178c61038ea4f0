#!/usr/bin/env bash
# The GPU timings of the shipped default in one run (issue 18): the MDI full disk (1024x1024 ->
# 4096x4096) with 1 and 10 samples, in bfloat16 (the default samples with its 4-step distilled
# student), then compiled, then with the 10-step DPM-Solver++ of the network it was distilled from
# (the default until 2026-12-05), in float32 for reference, and with the denoiser's weights cast to
# bfloat16 (an experiment: bench_fulldisk.py's LowPrecisionDenoiser); each table ends with the MDI
# archive extrapolated over 1 and 8 such GPUs. Last, profile_fulldisk.py says where the time goes (the network, the work around
# it). Every step has its own time limit, so one that hangs costs only its share; the tables are
# also written to OUTPUT_DIR. Run from the repository root on a CUDA machine with the package
# importable:
#
#     bash benchmarks/gpu_check.sh [OUTPUT_DIR]
#
# Environment: PYTHON (default python3), DEVICE (default cuda), MDI (the full disk's FITS file;
# default: the shared MDI file, else a synthetic disk), LIMIT (seconds per step, default 240), EXTRA
# (more bench_fulldisk.py arguments: EXTRA="--max-tiles 1" DEVICE=cpu is a dry run of a few minutes
# on a CPU).
set -u -o pipefail
out=${1:-gpu-check}
device=${DEVICE:-cuda}
limit=${LIMIT:-240}
python=${PYTHON:-python3}
mkdir -p "$out"
input=()
if [ -n "${MDI:-}" ]; then input=(--input "$MDI"); fi

"$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" | tee "$out/device.txt"

step() {
    local name=$1
    shift
    echo "== $name: bench_fulldisk.py $*"
    # shellcheck disable=SC2086  # EXTRA holds several arguments
    timeout "$limit" "$python" benchmarks/bench_fulldisk.py --device "$device" --model default "${input[@]}" \
        "$@" ${EXTRA:-} 2>&1 | grep -v -i warning | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}"
}

step default-bf16 --samples 1 10 --precision bf16
step default-bf16-compiled --samples 1 10 --precision bf16 --compile
step dpm-solver-bf16 --sampler dpm-solver++ --samples 1 10 --precision bf16
step default-fp32 --samples 1 --precision fp32
step default-bf16-cast --samples 1 10 --precision bf16 --cast-denoiser

echo "== profile: profile_fulldisk.py (where the time of 1 and 10 samples goes)"
timeout "$limit" "$python" benchmarks/profile_fulldisk.py --device "$device" "${input[@]}" --precision bf16 \
    2>&1 | grep -v -i warning | tee "$out/profile.txt"
echo "== profile: exit ${PIPESTATUS[0]}"
