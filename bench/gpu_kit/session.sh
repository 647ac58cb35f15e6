#!/usr/bin/env bash
# One prepared GPU session (issue 15, "Benchmarks"), for a device machine with no Deno and no
# registry: pack the kit here (bench/gpu_kit/pack.sh), then run from the repository root there
#
#   bash bench/gpu_kit/session.sh            # device tool: carry [".gpu"], timeout_s 400
#
# It unpacks Deno (and the Vulkan loaders where the machine has none), then runs the steps below
# in priority order, each under its own limit, and starts none once the budget (KIT_BUDGET_S,
# default 330 s, so that a second call fits in a task's device time) is spent. Logs go to $OUT
# (the device tool's folder; /tmp/gpu_out elsewhere): session.log and one <step>.log per step,
# eight files at most. KIT_STEPS=scale,profile runs a subset (the second call, for what the first
# had no time for). KIT_REHEARSE=1 shrinks every workload, to rehearse the whole session on a
# machine without a GPU (docs/benchmarks.md says how).
#
#   first    the default trainer's plan and first steps on a fresh machine (NVIDIA's shader disk
#            cache off, then on)
#   matmul   bench/gpu_matmul.ts (every tiling, NN/NT/TN, checked against f64) and PyTorch's f32
#            products at the same sizes (bench/torch_matmul.py)
#   steps    bench/gpu_steps.ts: the default step per method and mode, and the GPU options each off
#   peers    deno task bench (bench/main.ts): ours, jax-js, TF.js on this GPU, PyTorch on CUDA
#   scale    bench/scale.ts: GPT-2 small HD-PiSSA steps, ours against PyTorch CUDA
#   profile  bench/kernel_profile.ts: the default and GPT-2 steps kernel by kernel
#   extras   the default `deno task train` run end to end, and check_with_hf.py
set -uo pipefail
cd "$(dirname "$0")/../.."
kit=.gpu
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
log=$OUT/session.log
start=$(date +%s)
budget=${KIT_BUDGET_S:-330}
rehearse=${KIT_REHEARSE:-0}
stretch=${KIT_STRETCH:-1} # multiplies every step's limit (a rehearsal on a CPU adapter needs 4)
say() { echo "$*" | tee -a "$log"; }
left() { echo $((budget - ($(date +%s) - start))); }

[ -f "$kit/deno.xz" ] || {
  say "no kit at $kit: run bench/gpu_kit/pack.sh here first and carry .gpu"
  exit 2
}
say "== kit"
cat "$kit/MANIFEST" >>"$log"

# Deno, from the kit (Python's lzma where the machine has no xz).
if ! deno --version >/dev/null 2>&1; then
  bin=/tmp/gpu_kit_bin
  mkdir -p "$bin"
  if command -v xz >/dev/null; then
    xz -dc "$kit/deno.xz" >"$bin/deno.new"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      "$kit/deno.xz" "$bin/deno.new"
  fi
  chmod +x "$bin/deno.new"
  mv -f "$bin/deno.new" "$bin/deno" # a new file: a deno still running keeps the old one
  export PATH=$bin:$PATH
fi
# The Vulkan/GL loaders, where the image has none (device/README.md's recipe), never on a machine
# rehearsing. grep reads all of ldconfig's list: with -q it could stop early, and pipefail would
# take ldconfig's broken pipe for "not found".
if [ "$rehearse" != 1 ] && ! ldconfig -p | grep 'libvulkan\.so\.1' >/dev/null; then
  for f in "$kit"/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
  say "unpacked loaders: $(ls "$kit"/debs | tr '\n' ' ')"
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
export DENO_DIR=/tmp/gpu_kit_deno_dir DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export HDPISSA_PYTHON=${HDPISSA_PYTHON:-$(command -v python3)}
if "$HDPISSA_PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  export HDPISSA_TORCH_DEVICE=${HDPISSA_TORCH_DEVICE:-cuda}
fi
# The bundles sit in bench/ so that their relative URLs (bench/torch_micro.py) resolve.
for b in "$kit"/bundles/*.js; do cp "$b" "bench/_kit_$(basename "$b")"; done
trap 'rm -f bench/_kit_*.js' EXIT

say "deno: $(deno --version | head -1); python: $HDPISSA_PYTHON; torch device: ${HDPISSA_TORCH_DEVICE:-cpu}"
say "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}; rehearse=$rehearse; budget ${budget}s"
command -v nvidia-smi >/dev/null &&
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >>"$log" 2>&1
ls -l /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d >>"$log" 2>&1
probe() { timeout -k 5 60 deno run -A --no-config --no-lock bench/_kit_probe.js >>"$log" 2>&1; }
say "== probe"
if ! probe; then
  # No adapter through Vulkan: try wgpu's GL backend (NVIDIA's EGL) before giving up.
  export DENO_WEBGPU_BACKEND=gl
  say "== probe with DENO_WEBGPU_BACKEND=gl"
  probe || say "no WebGPU adapter either way: the steps below will fail"
fi

if [ "$rehearse" = 1 ]; then
  sizes="256 512" quick=--quick
  scale_args="--models base --seqs 64 --devices 2 --per-shard 1 --steps 2"
  profile_scale="--model base --seq 64 --devices 2 --per-shard 1"
  train_args="--steps 2"
else
  sizes="1024 2048 4096" quick=""
  scale_args="--models gpt2 --seqs 192 --devices 4 --per-shard 4 --steps 4"
  profile_scale="--model gpt2 --seq 192 --devices 4 --per-shard 4"
  train_args=""
fi
export sizes quick scale_args profile_scale train_args
run_deno() { deno run -A --no-config --no-lock "$@"; }
s_first() {
  __GL_SHADER_DISK_CACHE=0 run_deno bench/_kit_first_step.js --steps 5
  run_deno bench/_kit_first_step.js --steps 5
}
s_matmul() {
  # shellcheck disable=SC2086
  run_deno bench/_kit_gpu_matmul.js $sizes
  "$HDPISSA_PYTHON" bench/torch_matmul.py $sizes
}
s_steps() { run_deno bench/_kit_gpu_steps.js; }
s_peers() { run_deno bench/_kit_main.js --no-write $quick; }
# shellcheck disable=SC2086
s_scale() { run_deno bench/_kit_scale.js --methods hdpissa $scale_args; }
s_profile() {
  run_deno bench/_kit_kernel_profile.js
  # shellcheck disable=SC2086
  run_deno bench/_kit_kernel_profile.js $profile_scale
}
s_extras() {
  # shellcheck disable=SC2086
  time run_deno bench/_kit_train.js --out /tmp/gpu_kit_train $train_args
  "$HDPISSA_PYTHON" tests/runtime/models/fixtures/check_with_hf.py
}
export -f run_deno s_first s_matmul s_steps s_peers s_scale s_profile s_extras

# name, limit (s), least time worth starting it with (s)
steps=(first:45:20 matmul:90:40 steps:90:40 peers:120:60 scale:90:60 profile:45:30 extras:60:30)
for entry in "${steps[@]}"; do
  IFS=: read -r name cap need <<<"$entry"
  cap=$((cap * stretch)) need=$((need * stretch))
  if [ -n "${KIT_STEPS:-}" ] && [[ ",$KIT_STEPS," != *",$name,"* ]]; then continue; fi
  remaining=$(left)
  if ((remaining < need)); then
    say "== $name: skipped (${remaining}s of the budget left, needs ${need}s)"
    continue
  fi
  limit=$((cap < remaining ? cap : remaining))
  t0=$(date +%s)
  timeout -k 5 "$limit" bash -c "s_$name" >"$OUT/$name.log" 2>&1
  rc=$?
  say "== $name: rc $rc$( ((rc == 124)) && echo ' (hit its limit)') in $(($(date +%s) - t0))s of ${limit}s"
done
say "== done in $(($(date +%s) - start))s"
