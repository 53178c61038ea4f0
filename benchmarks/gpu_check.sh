#!/usr/bin/env bash
# The GPU checks of the shipped default in one run (issue 18), most important first, so that a run
# cut short by its lease still returns the main numbers:
#
# 1. tests/test_gpu_path.py, whose CUDA tests (CUDA against CPU, autocast, torch.compile) skip
#    everywhere else;
# 2. the MDI full disk (1024x1024 -> 4096x4096) with 1 and 10 samples in bfloat16 (the default
#    samples with its 4-step distilled student), the table ending with the MDI archive extrapolated
#    over 1 and 8 such GPUs;
# 3. profile_fulldisk.py: where the time of 1 and 10 samples goes (the network, the work around it);
# 4. the archive throughput measured, not extrapolated: bench_archive.py --batch-only, the default
#    through `sunpy-superres batch` over COPIES copies of the MDI full disk (one Dask worker on the
#    GPU), outputs written as FITS;
# 5. the same full disk compiled (torch.compile), with the 10-step DPM-Solver++ of the network the
#    student was distilled from, in float32 for reference, and with the denoiser's weights cast to
#    bfloat16 (an experiment: bench_fulldisk.py's LowPrecisionDenoiser).
#
# Every step has its own time limit, so one that hangs costs only its share; each step's output is
# also written to OUTPUT_DIR/STEP.txt. STEPS names the steps to run (default: all, in the order
# above: gpu-tests default-bf16 profile batch default-bf16-compiled dpm-solver-bf16 default-fp32
# default-bf16-cast): a lease that may end early, or a machine that may stop answering, is better
# spent on two calls than one, the first with STEPS="gpu-tests default-bf16". Run from the
# repository root on a CUDA machine with the package importable:
#
#     bash benchmarks/gpu_check.sh [OUTPUT_DIR]
#
# Environment: PYTHON (default python3), DEVICE (default cuda), MDI (the full disk's FITS file;
# default: the shared MDI file, else a synthetic disk; step 4 needs a real one), COPIES (default 8;
# 0 skips step 4), LIMIT (seconds per step, default 150), EXTRA (more bench_fulldisk.py arguments: EXTRA="--max-tiles 1" DEVICE=cpu
# COPIES=0 is a dry run of a few minutes on a CPU).
set -u -o pipefail
out=${1:-gpu-check}
device=${DEVICE:-cuda}
limit=${LIMIT:-150}
python=${PYTHON:-python3}
copies=${COPIES:-8}
mkdir -p "$out"
input=()
if [ -n "${MDI:-}" ]; then input=(--input "$MDI"); fi

wanted() {  # wanted NAME: whether STEPS (default: every step) names step NAME
    [ -z "${STEPS:-}" ] || [[ " $STEPS " == *" $1 "* ]]
}

run_step() {  # run_step NAME COMMAND...: time-limited, warnings dropped, output kept in $out/NAME.txt
    local name=$1
    shift
    wanted "$name" || return 0
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | grep -v -i warning | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}

step() {  # step NAME BENCH_FULLDISK_ARGS...
    local name=$1
    shift
    # shellcheck disable=SC2086  # EXTRA holds several arguments
    run_step "$name" "$python" benchmarks/bench_fulldisk.py --device "$device" --model default \
        "${input[@]}" "$@" ${EXTRA:-}
}

"$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" | tee "$out/device.txt"
# -c /dev/null: not the project's pytest settings, which need plugins (doctestplus, remotedata) a GPU
# image may lack and turn every warning of its library versions into an error.
run_step gpu-tests "$python" -m pytest -q -rs -p no:cacheprovider -c /dev/null --rootdir . \
    -W ignore::pytest.PytestUnknownMarkWarning tests/test_gpu_path.py
step default-bf16 --samples 1 10 --precision bf16
run_step profile "$python" benchmarks/profile_fulldisk.py --device "$device" "${input[@]}" --precision bf16

if [ "$copies" -gt 0 ]; then
    run_step batch "$python" benchmarks/bench_archive.py --model default@bf16 --device "$device" \
        --batch "$copies" --batch-only --workers 1 8 ${MDI:+--mdi "$MDI"}
fi

step default-bf16-compiled --samples 1 10 --precision bf16 --compile
step dpm-solver-bf16 --sampler dpm-solver++ --samples 1 10 --precision bf16
step default-fp32 --samples 1 --precision fp32
step default-bf16-cast --samples 1 10 --precision bf16 --cast-denoiser
