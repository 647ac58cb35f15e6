// Kernel conformance in the browser: small programs covering every primitive family, compiled by
// the bundle for this browser's WebGPU and compared with the CPU reference (`interpret`) in the
// same page. Chrome's shader compiler (Tint) is stricter than Deno's (naga) in places; this page
// is how the test suite sees it. The outcome is left in `window.conformance`.
// The bundle sits beside this page when served (a computed specifier: it is not there at check time).
const H = await import(new URL("./hdpissa.js", import.meta.url).href);

const a = H.array([[0.5, -1.25, 2], [3, -0.75, 0.1]]);
const b = H.array([[1.5, 0.25, -2], [0.5, 2, -3]]);
const m = H.array([[1, 2], [3, -1], [0.5, 0.25]]);
const sq = (n, seed) =>
  H.array(
    Array.from({ length: n }, (_, i) =>
      Array.from({ length: n }, (_, j) => Math.sin(seed * 7 + i * 1.3 + j * 0.7))),
  );
const ids = { shape: [4], dtype: "i32", data: Int32Array.from([2, 0, 1, 2]) };
const cases = {
  arithmetic: (x, y) => H.add(H.mul(x, y), H.div(H.sub(x, y), H.add(H.abs(y), 1))),
  transcendental: (x) =>
    H.add(H.add(H.exp(x), H.log(H.add(H.abs(x), 1))), H.add(H.tanh(x), H.erf(x))),
  trig_sqrt: (x) => H.add(H.add(H.sin(x), H.cos(x)), H.sqrt(H.abs(x))),
  pow: (x, y) => H.pow(H.abs(x), y),
  minmax_where: (x, y) => H.where(H.less(x, y), H.maximum(x, y), H.minimum(x, y)),
  infinities: (x) =>
    H.where(H.greater(x, 0), H.log(H.maximum(x, 0)), H.maximum(H.mul(x, 2), -Infinity)),
  reductions: (x) => H.add(H.add(H.sum(x, 1), H.max(x, 1)), H.min(x, 1)),
  argmax: (x) => H.cast(H.argmax(x, 1), "f32"),
  softmax_logsumexp: (x) => H.add(H.softmax(x, 1), H.expandDims(H.logsumexp(x, 1), 1)),
  matmul: (x, w) => H.matmul(x, w),
  layer_norm: (x) => H.layerNorm(x, H.ones([3]), H.zeros([3])),
  shapes: (x) => H.concat([H.transpose(x), H.slice(H.transpose(x), [1], [3])], 0),
  // rows of x gathered at i, then added back into zeros at i (duplicates accumulate)
  gather_scatter: (x, i) => H.scatterAdd(H.zeros([3, 4]), i, H.take(x, i)),
  random: () => H.uniform(H.prngKey(7), [8]),
  grad: (x, w) => H.grad((p) => H.sum(H.tanh(H.matmul(x, p))))(w),
  // Two products of one layout with different epilogues: one kernel text, the epilogue chosen by
  // a uniform, a placeholder bound for the other's residual (epilogue_variants.ts).
  epilogue_variants: (x, w, r) =>
    H.add(H.tanh(H.add(H.matmul(x, w), 0.5)), H.add(H.matmul(x, H.mul(w, 2)), r)),
  // Independent products of one text as one dispatch, each binding reached through a switch on
  // the workgroup's member (kernel_groups.ts); in the shared-memory kernel too, whose barriers
  // Tint's uniformity analysis must accept.
  kernel_groups: (x, w, r) =>
    H.concat([H.matmul(x, w), H.matmul(r, w), H.matmul(w, r), H.matmul(x, H.transpose(w))], 0),
  kernel_groups_shared: (x, w, r) =>
    H.concat([H.matmul(x, w), H.matmul(r, w), H.matmul(w, r), H.matmul(x, H.transpose(w))], 0),
  // Long rows reduced by a workgroup each (rows_workgroup.ts): halving in workgroup memory, and
  // with subgroups combining the partials first, the form a GPU granting `subgroups` takes
  // (SwiftShader's subgroups are 4 wide). Maxima, sums, a softmax and a norm, a NaN-carrying row.
  rows_tree: (x) => rowPrograms(x),
  rows_subgroups: (x) => rowPrograms(x),
  // The same under a GPU's whole code-generator settings (uniform sizes, grouped dispatches).
  rows_subgroups_gpu: (x) => rowPrograms(x),
  // f16: every op rounds to half (f16_round); where the adapter grants shader-f16, intermediates
  // and outputs are written through array<f16> under `enable f16;` (halfStorage).
  f16_ops: (x, w) => {
    const h = H.matmul(x, w);
    return H.concat([H.softmax(h, 1), H.tanh(H.add(h, 0.5)), H.mul(H.div(h, 11), 11)], 0);
  },
  f16_words: (x, w) => {
    const h = H.matmul(x, w);
    return H.concat([H.softmax(h, 1), H.tanh(H.add(h, 0.5)), H.mul(H.div(h, 11), 11)], 0);
  },
  f16_grad: (x, w) => H.grad((p) => H.sum(H.tanh(H.matmul(x, p))))(w),
};
function rowPrograms(x) {
  const col = (v) => H.expandDims(v, 1);
  return H.concat([
    H.add(H.softmax(x, 1), col(H.logsumexp(x, 1))),
    H.layerNorm(x, H.ones([x.shape[1]]), H.zeros([x.shape[1]])),
    H.add(H.mul(x, 0), H.add(col(H.max(x, 1)), col(H.cast(H.sum(H.cast(x, "i32"), 1), "f32")))),
  ], 0);
}
const ROWS = { rowWorkgroup: 64 };
const TILED = [{ tileM: 16, tileN: 16, tileK: 8, threadM: 4, threadN: 4 }];
const options = {
  kernel_groups: { codegen: { groupKernels: true } },
  kernel_groups_shared: { codegen: { groupKernels: true, matmulTilings: TILED } },
  rows_tree: { codegen: { ...ROWS, subgroupReductions: false } },
  rows_subgroups: { codegen: { ...ROWS, subgroupReductions: true } },
  f16_words: { codegen: { halfStorage: false } },
  rows_subgroups_gpu: {
    codegen: {
      ...H.gpuCodegen({
        maxComputeWorkgroupStorageSize: 16384,
        maxComputeInvocationsPerWorkgroup: 256,
      }),
      subgroupReductions: true,
    },
  },
};
const args = {
  arithmetic: [a, b],
  transcendental: [a],
  trig_sqrt: [a],
  pow: [a, b],
  minmax_where: [a, b],
  infinities: [a],
  reductions: [a],
  argmax: [a],
  softmax_logsumexp: [a],
  matmul: [a, m],
  layer_norm: [a],
  shapes: [a],
  gather_scatter: [a, ids],
  random: [],
  grad: [a, m],
  epilogue_variants: [a, m, H.array([[1, -1], [0.5, 2]])],
  kernel_groups: [sq(16, 1), sq(16, 2), sq(16, 3)],
  kernel_groups_shared: [sq(16, 1), sq(16, 2), sq(16, 3)],
};
// 6 rows of 300 (past MIN_WORKGROUP_ROW and the workgroup); row 4 holds a NaN.
const rows = Array.from(
  { length: 6 },
  (_, i) =>
    Array.from(
      { length: 300 },
      (_, j) => i === 4 && j === 123 ? NaN : 3 * Math.sin(i * 2.1 + j * 0.37),
    ),
);
args.rows_tree = args.rows_subgroups = args.rows_subgroups_gpu = [H.array(rows)];
// Row lengths and workgroups where the subgroups' partials number from 8 to 64 (SwiftShader's
// 4-wide subgroups), rows shorter than the workgroup and ones a few strides long.
for (const [length, size] of [[33, 32], [64, 256], [100, 32], [257, 256], [1000, 64]]) {
  const name = `rows_subgroups_${length}_${size}`;
  cases[name] = rowPrograms;
  options[name] = { codegen: { rowWorkgroup: size, subgroupReductions: true } };
  args[name] = [
    H.array(
      Array.from(
        { length: 3 },
        (_, i) => Array.from({ length }, (_, j) => Math.cos(i * 1.7 + j * 0.11) * (1 + j % 5)),
      ),
    ),
  ];
}
args.gather_scatter = [H.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]), ids];
const half = (x) => ({ ...x, dtype: "f16", data: Float16Array.from(x.data) });
args.f16_ops = args.f16_words = args.f16_grad = [half(sq(16, 4)), half(sq(16, 5))];
// Half results agree to the half ULP (2⁻¹¹ relative) a differently rounded f32 exp may flip.
const tolerance = (name) => (name.startsWith("f16") ? 2e-3 : 1e-4);

async function run() {
  const results = {};
  for (const [name, f] of Object.entries(cases)) {
    try {
      const want = H.interpret(f, ...args[name]);
      const got = await H.jit(f, options[name])(...args[name]);
      let worst = 0;
      for (let k = 0; k < want.data.length; k++) {
        const w = want.data[k], g = got.data[k];
        const d = Number.isNaN(w) && Number.isNaN(g)
          ? 0
          : w === g
          ? 0
          : Math.abs(w - g) / (1 + Math.abs(w));
        worst = Math.max(worst, Number.isNaN(d) ? Infinity : d);
      }
      // Which form ran: the kernels' text (the subgroup form only where the device grants it).
      const wgsl = (await H.jit(f, options[name]).lower(...args[name])).kernels.map((k) => k.wgsl);
      results[name] = {
        ok: worst < tolerance(name) && got.dtype === want.dtype,
        worst,
        subgroups: wgsl.some((t) => t.includes("enable subgroups;")),
        half: wgsl.some((t) => t.includes("enable f16;")),
      };
    } catch (e) {
      results[name] = { ok: false, error: String(e.message ?? e).slice(0, 600) };
    }
  }
  return results;
}

/** Whether this browser's adapter offers `feature` (the bundle's device asks for it then). */
async function offered(feature) {
  const adapter = await navigator.gpu.requestAdapter();
  return adapter?.features.has(feature) ?? false;
}

globalThis.conformance = navigator.gpu
  ? Promise.all([run(), offered("subgroups"), offered("shader-f16")]).then((
    [r, subgroups, f16],
  ) => ({ ...r, subgroupsOffered: subgroups, f16Offered: f16 }))
  : Promise.resolve({ skipped: "navigator.gpu is missing" });
