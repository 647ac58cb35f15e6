/**
 * `deno task bundle`: the browser build. esbuild bundles web.ts (the DSL, compiler and WebGPU
 * runtime) into one ES module, dist/hdpissa.js, and copies the demo page (web/) beside it:
 * serve dist/ over http(s) (WebGPU needs a secure context: localhost is one) and open index.html.
 */

import * as esbuild from "npm:esbuild@0.25.12";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../", import.meta.url));

/** Builds the bundle into `outDir`; returns its path and size. */
export async function bundle(
  outDir = join(root, "dist"),
): Promise<{ path: string; bytes: number }> {
  await Deno.mkdir(outDir, { recursive: true });
  const path = join(outDir, "hdpissa.js");
  try {
    await esbuild.build({
      entryPoints: [join(root, "web.ts")],
      outfile: path,
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      sourcemap: true,
      logLevel: "warning",
      plugins: [{
        name: "deno-only-modules",
        setup(build) {
          // The MPI group (FFI, a watchdog worker) is imported on demand in mode "mpi" only.
          build.onResolve(
            { filter: /mpi_group\.ts$/ },
            (args) => ({ path: args.path, external: true }),
          );
        },
      }],
    });
  } finally {
    await esbuild.stop();
  }
  for await (const e of Deno.readDir(join(root, "web"))) {
    if (e.isFile) await Deno.copyFile(join(root, "web", e.name), join(outDir, e.name));
  }
  return { path, bytes: (await Deno.stat(path)).size };
}

if (import.meta.main) {
  const out = Deno.args[0] ?? join(root, "dist");
  const { path, bytes } = await bundle(out);
  console.log(`${path}: ${(bytes / 1024).toFixed(0)} KiB; demo page: ${join(out, "index.html")}`);
}
