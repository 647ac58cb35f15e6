#!/usr/bin/env bash
# Packs what bench/gpu_kit/session.sh needs on a GPU machine that reaches no registry and has no
# Deno: the Deno binary (xz), the benchmarks that import npm packages bundled into single files
# (`deno bundle`: TF.js, jax-js, the tokenizers), and the Vulkan/GL loaders that device
# machines may lack. Writes .gpu/ (git-ignored, about 40 MB) in the repository root; the device
# call carries it: `carry: [".gpu"]`. Run it here, from the repository root, right before the
# call: the bundles are this working tree's code.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
kit=.gpu
rm -rf "$kit"
mkdir -p "$kit/bundles" "$kit/debs"

deno_bin=$(readlink -f "$(command -v deno)")
echo "deno: $("$deno_bin" --version | head -1) from $deno_bin"
xz -T0 -6 -c "$deno_bin" >"$kit/deno.xz"

# Every program the session runs, bundled with the npm packages it imports (bench/main.ts: TF.js
# and jax-js through the peers' config; most others the tokenizers, through runtime/core.ts).
# bench/scale.ts still starts bench/gpu_scale.ts from source: its imports are all relative.
deno bundle --quiet --config bench/peers/deno.json bench/main.ts -o "$kit/bundles/main.js"
for f in bench/gpu_kit/probe.ts bench/first_step.ts bench/gpu_matmul.ts bench/gpu_steps.ts \
  bench/scale.ts bench/kernel_profile.ts cli/train.ts; do
  deno bundle --quiet "$f" -o "$kit/bundles/$(basename "$f" .ts).js"
done

# The loaders Deno's wgpu needs for NVIDIA's Vulkan driver (device/README.md's list).
if command -v apt-get >/dev/null; then
  (cd "$kit/debs" && apt-get download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 \
    libglx0 libgles2 2>&1 | grep -v "^W:" || true)
fi

{
  echo "packed: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with local changes)')"
  echo "deno: $("$deno_bin" --version | head -1)"
  (cd "$kit" && find . -type f ! -name MANIFEST -printf '%s\t%p\n' | sort -k2)
} >"$kit/MANIFEST"
cat "$kit/MANIFEST"
du -sh "$kit"
