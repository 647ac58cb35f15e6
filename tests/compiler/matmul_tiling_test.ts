/** The shared-memory matmul's tiling rules: validity against device limits, choice by shape. */

import assert from "node:assert/strict";
import {
  chooseTiling,
  DEFAULT_CODEGEN,
  type MatmulTiling,
  tilingCost,
  tilingProblem,
} from "../../compiler/mod.ts";
import { GPU_MATMUL_TILINGS } from "../../runtime/jit.ts";

const webgpuDefaults = {
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
};
const big: MatmulTiling = { tileM: 128, tileN: 128, tileK: 16, threadM: 8, threadN: 8 };
const mid: MatmulTiling = { tileM: 64, tileN: 64, tileK: 16, threadM: 4, threadN: 4 };

Deno.test("tilingProblem: workgroup memory, invocations and block shapes are checked", () => {
  // 128² at tileK 16 needs 16 × (132 + 132) × 4 bytes: over WebGPU's default 16 KiB.
  assert.equal(tilingCost(big).bytes, 16896);
  assert.match(tilingProblem(big, webgpuDefaults)!, /16896 bytes of workgroup memory/);
  assert.equal(
    tilingProblem(big, { ...webgpuDefaults, maxComputeWorkgroupStorageSize: 49152 }),
    undefined,
  );
  assert.match(
    tilingProblem({ ...mid, threadM: 2, threadN: 2 }, webgpuDefaults)!,
    /multiples of 4/,
  );
  assert.match(
    tilingProblem(mid, { ...webgpuDefaults, maxComputeInvocationsPerWorkgroup: 128 })!,
    /256 invocations/,
  );
  // Every default GPU tiling is valid on a device with WebGPU's guaranteed limits, except the one
  // that needs more than 16 KiB (filtered out by codegenFor on such a device).
  const valid = GPU_MATMUL_TILINGS.filter((t) => !tilingProblem(t, webgpuDefaults));
  assert.equal(valid.length, GPU_MATMUL_TILINGS.length - 1);
});

Deno.test("chooseTiling: large tiles for large outputs, smaller ones to fill the device, none for thin outputs", () => {
  const opts = { ...DEFAULT_CODEGEN, matmulTilings: [big, mid], matmulMinWorkgroups: 128 };
  assert.equal(chooseTiling(4096, 4096, 1, opts), big); // 1024 workgroups of 128²
  assert.equal(chooseTiling(1024, 1024, 1, opts), mid); // 64 of 128², 256 of 64²
  assert.equal(chooseTiling(40, 40, 1, opts), mid); // too few workgroups either way: the smallest
  assert.equal(chooseTiling(4096, 8, 1, opts), undefined); // rank-8 adapter product: thin
  assert.equal(chooseTiling(4096, 4096, 1, { ...opts, matmulTilings: [] }), undefined);
});
