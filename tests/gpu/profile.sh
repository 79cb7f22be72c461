#!/usr/bin/env bash
# Nsight Compute profile of the CUDA FFN kernels at one benchmark point (default: LLaMA-2-7B FFN,
# batch 8, 11% active, independent masks). Writes $OUT/ncu_<batch>.txt.
# Usage: OUT=dir tests/gpu/profile.sh [batch]
set -uo pipefail
OUT="${OUT:-/tmp/sparsed-gpu-out}"
BATCH="${1:-8}"
BUILD=/tmp/sparsed-gpu-build
export PATH=/usr/local/cuda/bin:$PATH
mkdir -p "$OUT"
if [ ! -x "$BUILD/ffn_gpu_bench" ]; then
  cmake -S tests/gpu -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null &&
    cmake --build "$BUILD" -j16 >/dev/null || exit 1
fi
ncu --clock-control none --kernel-name regex:'(Gate|Up|Down|Compact|Reduce)Kernel' --launch-skip 20 --launch-count 5 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
  "$BUILD/ffn_gpu_bench" --shape llama2-7b --batch "$BATCH" --ratio 0.11 --skew 0 >"$OUT/ncu_$BATCH.txt" 2>&1
grep -E "Kernel|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|Stall|Theoretical Occupancy|Block Limit|L1/TEX Hit|L2 Hit|Warp Cycles Per Issued" "$OUT/ncu_$BATCH.txt" | head -120
