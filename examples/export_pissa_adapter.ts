/**
 * Research script: train PiSSA adapters and ship them as a PEFT LoRA adapter. PiSSA's B·A starts
 * at the top singular part of W (W = W_res + B₀A₀), so the trained adapter is exported as a LoRA
 * of rank 2r on the *original* W: ΔW = B·A − B₀·A₀ (`pissaToLora`). The script checks that the
 * exported factors reproduce the trained model, then writes adapter_model.safetensors and
 * adapter_config.json (load with `PeftModel.from_pretrained(base, dir)`).
 *
 *   deno run --allow-read --allow-write --allow-env examples/export_pissa_adapter.ts [out-dir]
 */

import {
  createTrainer,
  type HostArray,
  nn,
  pissaToLora,
  readSafetensors,
  saveLoraAdapter,
  type Tensor,
} from "../mod.ts";

// A small Llama with Hugging Face parameter names (nn.initParams), adapted on q_proj and v_proj.
const cfg: nn.ModelConfig = {
  family: "llama",
  vocab: 32,
  width: 32,
  layers: 2,
  heads: 4,
  kvHeads: 4,
  ffn: 64,
  context: 16,
  normEps: 1e-5,
  ropeTheta: 10000,
  tieEmbeddings: false,
  bos: 29,
  eos: 30,
  pad: 31,
};
const base = nn.initParams(cfg, 11);
const adapt = Object.keys(base).filter((n) => /(q_proj|v_proj)\.weight$/.test(n));
const tokens = (seed: number): HostArray => ({
  shape: [4, 12],
  dtype: "i32",
  data: Int32Array.from({ length: 48 }, (_, i) => (seed * 7 + i * 3) % 29),
});
const batch = (s: number) => ({
  ids: tokens(s),
  targets: tokens(s + 1),
  mask: { shape: [4, 12], dtype: "f32" as const, data: new Float32Array(48).fill(1) },
});

const rank = 4, alpha = 8;
const trainer = await createTrainer({
  loss: (p: Record<string, Tensor>, b: nn.LmBatch<Tensor>) => nn.lmLoss(cfg, p, b),
  params: base,
  adapt,
  method: "pissa",
  devices: 2,
  rank,
  alpha,
  optimizer: { lr: 5e-3 },
});
for (let s = 0; s < 20; s++) {
  const { loss } = await trainer.step([batch(2 * s), batch(2 * s + 1)]);
  if (s % 5 === 4) console.log(`step ${s + 1}: loss ${loss.map((l) => l.toFixed(4)).join(", ")}`);
}

// PiSSA → LoRA on the original weights, checked against the trained dense model.
const { trained, initial } = (await trainer.adapters())!;
const lora = pissaToLora(trained, initial!);
const merged = await trainer.params();
let worst = 0;
for (const name of adapt) {
  const [m, n] = base[name].shape, r2 = lora.rank, s = lora.alpha / lora.rank;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let delta = 0;
      for (let c = 0; c < r2; c++) {
        delta += lora.b[name].data[i * r2 + c] * lora.a[name].data[c * n + j];
      }
      const w = base[name].data[i * n + j] + s * delta;
      worst = Math.max(worst, Math.abs(w - merged[name].data[i * n + j]));
    }
  }
}
console.log(
  `LoRA rank ${lora.rank} (α = ${lora.alpha}) reproduces the trained weights to ${
    worst.toExponential(2)
  }`,
);

const dir = Deno.args[0] ?? await Deno.makeTempDir({ prefix: "pissa-adapter-" });
await saveLoraAdapter(dir, lora, { baseModel: "examples/tiny-llama" });
const written = await readSafetensors(`${dir}/adapter_model.safetensors`);
console.log(
  `wrote ${dir}: ${Object.keys(written).length} tensors, e.g. ${Object.keys(written).sort()[0]}`,
);
console.log(await Deno.readTextFile(`${dir}/adapter_config.json`));
