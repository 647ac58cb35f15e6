import * as d from "./mod.ts";
import { initParams, lmLoss } from "./dsl/nn/transformer.ts";
import { adamInit, adamUpdate } from "./dsl/optim.ts";
import { BASE_CONFIG } from "./runtime/models/base_config.ts";
const cfg = BASE_CONFIG;
const [rb, cg] = Deno.args.map(Number);
const params = initParams(cfg, 0);
const step = d.jit((p: any, s: any, lr: any, batch: any) => {
  const [loss, g] = d.valueAndGrad((pp: any) => lmLoss(cfg, pp, batch))(p);
  const u = adamUpdate(p, g, s, lr);
  return { params: u.params, state: u.state, loss };
}, { donate: [0, 1], codegen: { matmulRowBlock: rb, matmulColumnGroups: cg } });
const B = 8, T = 256;
const ids = new Int32Array(B * T).map((_, i) => (i * 7919) % 256);
const batch = { ids: { shape: [B, T], dtype: "i32", data: ids }, targets: { shape: [B, T], dtype: "i32", data: ids.map((x) => (x + 1) % 256) }, mask: { shape: [B, T], dtype: "f32", data: new Float32Array(B * T).fill(1) } };
let p: any = await d.toDevice(params), s: any = await d.toDevice(adamInit(params));
const lr = d.array(1e-3);
const times: number[] = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  const out: any = await step.onDevice(p, s, lr, batch);
  p = out.params; s = out.state;
  await d.toHost(out.loss);
  times.push(performance.now() - t0);
}
const prog = await step.lower(params, adamInit(params), lr, batch);
console.log(`rb ${rb} cg ${cg}: first ${times[0].toFixed(0)} ms, steady ${Math.min(...times.slice(1)).toFixed(0)} ms, wgsl ${(new Set(prog.kernels.map((k) => k.wgsl)).size)} unique, ${([...new Set(prog.kernels.map((k) => k.wgsl))].reduce((a, w) => a + w.length, 0) / 1024).toFixed(0)} KB`);
