/**
 * PyTorch, the anchor a user would otherwise pick. On the CPU by default: Debian's `python3-torch`
 * (with `libopenblas0-pthread` for a threaded BLAS), installed with apt-get when the system Python
 * lacks torch. On a GPU machine, that machine's PyTorch with CUDA (`HDPISSA_PYTHON`,
 * `HDPISSA_TORCH_DEVICE=cuda`). Benchmarks only: never CI.
 */

/**
 * Debian's own interpreter (another python3 earlier on PATH lacks its torch), or `HDPISSA_PYTHON`:
 * a virtual environment's, say, with a pip-installed torch 2.x (the benchmark needs `--allow-run`
 * for it, `deno run -A` grants that).
 */
export const PYTHON = Deno.env.get("HDPISSA_PYTHON") ?? "/usr/bin/python3";

/**
 * Where the PyTorch anchors run (`HDPISSA_TORCH_DEVICE`, read by bench/torch_device.py): "cpu" by
 * default, "cuda" on a GPU machine (f32 products, TF32 off).
 */
export const TORCH_DEVICE = Deno.env.get("HDPISSA_TORCH_DEVICE") ?? "cpu";
/** The device as table headings name it: "CPU", "CUDA". */
export const TORCH_DEVICE_LABEL = TORCH_DEVICE.split(":")[0].toUpperCase();

/** torch's version, installing Debian's package first if needed (throws if that fails). */
export async function ensureTorch(): Promise<string> {
  const probe = () =>
    new Deno.Command(PYTHON, { args: ["-c", "import torch; print(torch.__version__)"] }).output();
  let out = await probe().catch(() => undefined);
  if (!out?.success) {
    console.error("installing Debian's python3-torch and libopenblas0-pthread (apt-get)…");
    const apt = await new Deno.Command("apt-get", {
      args: ["install", "-y", "-qq", "python3-torch", "libopenblas0-pthread"],
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).output();
    if (!apt.success) throw new Error("apt-get install python3-torch failed (run it as root)");
    out = await probe();
  }
  return new TextDecoder().decode(out!.stdout).trim();
}
