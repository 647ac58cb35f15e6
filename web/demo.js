// The demo page's script: the DSL on the CPU reference, then — where the browser exposes WebGPU —
// HD-PiSSA fine-tuning of a tiny Llama (K = 2 shards) with the loss plotted as it falls. The
// outcome is also left in `window.demoResult` for the headless-browser test.
import * as H from "./hdpissa.js";

const log = (msg) => {
  document.getElementById("log").textContent += msg + "\n";
};

function plot(losses) {
  const w = 480, h = 200, pad = 30;
  const max = Math.max(...losses), min = Math.min(...losses);
  const x = (i) => pad + (i / Math.max(1, losses.length - 1)) * (w - 2 * pad);
  const y = (v) => h - pad - ((v - min) / Math.max(1e-9, max - min)) * (h - 2 * pad);
  const points = losses.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  document.getElementById("chart").innerHTML =
    `<svg width="${w}" height="${h}" xmlns="http://www.w3.org/2000/svg">` +
    `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${points}"/>` +
    `<text x="${pad}" y="14" font-size="12">training loss ${max.toFixed(3)} → ${
      losses.at(-1).toFixed(3)
    }</text></svg>`;
}

/** Next-token batches of a counting pattern (token t is followed by t + 1 mod 16). */
function batch(seed) {
  const rows = 2, len = 8;
  const ids = new Int32Array(rows * len), targets = new Int32Array(rows * len);
  for (let r = 0; r < rows; r++) {
    const start = (seed * 7 + r * 3) % 16;
    for (let t = 0; t < len; t++) {
      ids[r * len + t] = (start + t) % 16;
      targets[r * len + t] = (start + t + 1) % 16;
    }
  }
  return {
    ids: { shape: [rows, len], dtype: "i32", data: ids },
    targets: { shape: [rows, len], dtype: "i32", data: targets },
    mask: { shape: [rows, len], dtype: "f32", data: new Float32Array(rows * len).fill(1) },
  };
}

async function run() {
  const result = { dsl: null, webgpu: null, adapter: null, losses: [], error: null };
  // 1. The DSL: a gradient on the CPU reference (no GPU needed).
  const f = (w, x) => H.sum(H.tanh(H.matmul(x, w)));
  const g = H.interpret(
    H.grad(f),
    H.array([[1, 2], [3, 4], [5, 6]]),
    H.array([[1, 0, 0], [0, 1, 0]]),
  );
  result.dsl = Array.from(g.data);
  log(`grad on the CPU reference: [${result.dsl.map((v) => v.toFixed(4)).join(", ")}]`);
  // 2. WebGPU: train.
  if (!navigator.gpu) {
    result.webgpu = "navigator.gpu is missing: this browser (or its flags) does not expose WebGPU";
    log(result.webgpu);
    return result;
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) {
    result.webgpu = "navigator.gpu.requestAdapter() returned null: no usable GPU adapter";
    log(result.webgpu);
    return result;
  }
  result.adapter = `${adapter.info?.vendor ?? ""} ${adapter.info?.architecture ?? ""} ${
    adapter.info?.description ?? ""
  }`.trim();
  log(`WebGPU adapter: ${result.adapter || "(no info)"}`);
  const cfg = {
    family: "llama",
    vocab: 16,
    width: 32,
    layers: 1,
    heads: 2,
    kvHeads: 2,
    ffn: 48,
    context: 8,
    normEps: 1e-5,
    ropeTheta: 10000,
    tieEmbeddings: false,
    bos: 13,
    eos: 14,
    pad: 15,
  };
  const params = H.nn.initParams(cfg, 1);
  const adapt = Object.keys(params).filter((n) => /_proj\.weight$/.test(n));
  const trainer = await H.createTrainer({
    loss: (p, b) => H.nn.lmLoss(cfg, p, b),
    params,
    adapt,
    method: "hdpissa",
    devices: 2,
    rank: 4,
    optimizer: { lr: 0.02 },
  });
  const steps = Number(new URLSearchParams(location.search).get("steps") ?? 30);
  for (let s = 0; s < steps; s++) {
    const { loss } = await trainer.step([batch(2 * s), batch(2 * s + 1)]);
    result.losses.push((loss[0] + loss[1]) / 2);
    plot(result.losses);
  }
  result.webgpu = "trained";
  log(
    `HD-PiSSA, K = 2, r = 4: loss ${result.losses[0].toFixed(4)} → ${
      result.losses.at(-1).toFixed(4)
    } in ${steps} steps`,
  );
  return result;
}

globalThis.demoResult = run().catch((e) => {
  log(`error: ${e.message}`);
  return { error: String(e.stack ?? e) };
});
