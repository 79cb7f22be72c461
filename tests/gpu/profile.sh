#!/usr/bin/env bash
# Nsight Compute profile of the CUDA FFN kernels at one benchmark point (default: LLaMA-2-7B FFN,
# batch 8, 11% active, independent masks), with the ffn_gpu_bench of tests/gpu/make_bundle.sh's
# bundle (.gpu/bundle; the GPU host builds nothing). Writes $OUT/ncu_<batch>.txt.
# Usage (repository root): OUT=dir tests/gpu/profile.sh [batch]
set -uo pipefail
OUT="${OUT:-/tmp/sparsed-gpu-out}"
BATCH="${1:-8}"
BUNDLE=.gpu/bundle
if [[ ! -x "$BUNDLE/bin/ffn_gpu_bench" ]]; then
  echo "error: no $BUNDLE/bin/ffn_gpu_bench: run tests/gpu/make_bundle.sh on the build machine" >&2
  echo "and copy .gpu/bundle here with the source tree." >&2
  exit 1
fi
export PATH=/usr/local/cuda/bin:$PATH
CUDA_LIBS=$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")/../lib64
export LD_LIBRARY_PATH="$PWD/$BUNDLE/lib:$CUDA_LIBS:${LD_LIBRARY_PATH:-}"
mkdir -p "$OUT"
ncu --clock-control none --kernel-name regex:'(Gate|Up|Down|Compact|Reduce)Kernel' --launch-skip 20 --launch-count 5 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
  "$BUNDLE/bin/ffn_gpu_bench" --shape llama2-7b --batch "$BATCH" --ratio 0.11 --skew 0 >"$OUT/ncu_$BATCH.txt" 2>&1
grep -E "Kernel|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|Stall|Theoretical Occupancy|Block Limit|L1/TEX Hit|L2 Hit|Warp Cycles Per Issued" "$OUT/ncu_$BATCH.txt" | head -120
