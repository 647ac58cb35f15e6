import assert from "node:assert/strict";
import { initParams, initSpecs, parameterShapes } from "../../../dsl/nn/transformer.ts";
import { gpu } from "../../../runtime/device.ts";
import { initParamsOnDevice } from "../../../runtime/models/init.ts";
import { TINY_GPT2, TINY_QWEN2 } from "../../helpers/tiny_models.ts";

for (const cfg of [TINY_GPT2, TINY_QWEN2]) {
  Deno.test(`initParamsOnDevice (${cfg.attentionBias ? "qwen2" : cfg.family}): initParams's values, the same bits every run`, async () => {
    const host = initParams(cfg, 3);
    const device = await initParamsOnDevice(cfg, 3);
    assert.deepEqual(Object.keys(device), Object.keys(parameterShapes(cfg)));
    for (const { name, constant, std } of initSpecs(cfg)) {
      const [a, b] = [device[name], host[name]];
      assert.deepEqual(a.shape, b.shape, name);
      if (constant !== undefined) {
        assert.deepEqual(a.data, b.data, name);
        continue;
      }
      // Box–Muller's log and sqrt are a few ULPs off on a device, and cos has an absolute error
      // (Vulkan allows 2⁻¹¹; llvmpipe is near 1e-6), scaled by the radius and std.
      for (let i = 0; i < a.data.length; i++) {
        const d = Math.abs(a.data[i] - b.data[i]);
        const tol = 1e-5 * Math.abs(b.data[i]) + 1e-4 * std;
        assert.ok(d <= tol, `${name}[${i}]: ${a.data[i]} vs ${b.data[i]}`);
      }
    }
    assert.deepEqual(await initParamsOnDevice(cfg, 3), device);
    assert.notDeepEqual(
      (await initParamsOnDevice(cfg, 4))["model.layers.0.mlp.up_proj.weight"] ??
        (await initParamsOnDevice(cfg, 4))["transformer.h.0.mlp.c_fc.weight"],
      device["model.layers.0.mlp.up_proj.weight"] ?? device["transformer.h.0.mlp.c_fc.weight"],
    );
  });
}

Deno.test("initParamsOnDevice splits a tensor over the buffer size into row chunks, same bits", async () => {
  // 256-byte buffers: the 20×16 embedding (1,280 bytes) takes 5 chunks of 4 rows.
  const small = await gpu({ limits: { maxBufferSize: 256 } });
  const chunked = await initParamsOnDevice(TINY_GPT2, 5, { device: small });
  const whole = await initParamsOnDevice(TINY_GPT2, 5);
  assert.deepEqual(chunked, whole);
  small.destroy();
});
