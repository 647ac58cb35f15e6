/**
 * `deno task bundle`: the browser build. esbuild bundles web.ts (the DSL, compiler, WebGPU runtime,
 * trainer, model files, tokenizers) into one ES module, dist/hdpissa.js, and the fine-tuning app
 * (web/app.ts, which imports that module) into dist/app.js; the page (web/index.html) and the
 * shipped base model (models/base → dist/models/base) are copied beside them. Serve dist/ over
 * http(s) (WebGPU needs a secure context: localhost is one) and open index.html.
 *
 * The npm packages the runtime imports (`npm:` specifiers: the tokenizers, the Jinja renderer) are
 * taken from Deno's npm cache, where `deno info` says each one is, and bundled.
 */

import * as esbuild from "npm:esbuild@0.25.12";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../", import.meta.url));

/** Files of models/base the app loads as "the shipped base". */
export const BASE_MODEL_FILES = ["config.json", "model.safetensors", "README.md"];

interface NpmPackage {
  name: string;
  localPath: string;
  dependencies: string[];
}

/** The npm packages `entries` import, by specifier, with their cache folders (`deno info`). */
async function npmGraph(entries: string[]) {
  const bySpecifier = new Map<string, string>();
  const packages: Record<string, NpmPackage> = {};
  for (const entry of entries) {
    const res = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!res.success) {
      throw new Error(`deno info ${entry} failed: ${new TextDecoder().decode(res.stderr)}`);
    }
    const info = JSON.parse(new TextDecoder().decode(res.stdout)) as {
      modules: { kind: string; specifier: string; npmPackage?: string }[];
      redirects: Record<string, string>;
      npmPackages: Record<string, NpmPackage>;
    };
    for (const m of info.modules) {
      if (m.kind === "npm" && m.npmPackage) bySpecifier.set(m.specifier, m.npmPackage);
    }
    for (const [from, to] of Object.entries(info.redirects)) {
      const id = bySpecifier.get(to);
      if (id) bySpecifier.set(from, id);
    }
    Object.assign(packages, info.npmPackages);
  }
  return { bySpecifier, packages };
}

/**
 * An esbuild plugin resolving `npm:name@version/sub` imports (and the bare imports inside those
 * packages) to Deno's npm cache: each package is linked into a node_modules folder of its own
 * under `shim`, and esbuild resolves the package's `exports` from there.
 */
function npmFromDenoCache(
  graph: Awaited<ReturnType<typeof npmGraph>>,
  shim: string,
): esbuild.Plugin {
  const linked = new Map<string, string>();
  const linkDir = (id: string) => {
    let dir = linked.get(id);
    if (!dir) {
      const pkg = graph.packages[id];
      dir = join(shim, String(linked.size));
      const link = join(dir, "node_modules", ...pkg.name.split("/"));
      Deno.mkdirSync(join(link, ".."), { recursive: true });
      Deno.symlinkSync(pkg.localPath, link);
      linked.set(id, dir);
    }
    return dir;
  };
  const owner = (path: string) =>
    Object.entries(graph.packages).find(([, p]) =>
      path === p.localPath || path.startsWith(p.localPath + sep)
    );
  return {
    name: "npm-from-deno-cache",
    setup(build) {
      build.onResolve({ filter: /^npm:/ }, async (args) => {
        const id = graph.bySpecifier.get(args.path) ??
          graph.bySpecifier.get(args.path.replace(/^npm:\/?/, "npm:/"));
        const m = /^npm:\/?((?:@[^/@]+\/)?[^/@]+)(?:@[^/]*)?(\/.*)?$/.exec(args.path);
        if (!id || !m || !graph.packages[id]) {
          return { errors: [{ text: `${args.path}: not in the module graph (run deno cache)` }] };
        }
        const r = await build.resolve(`${m[1]}${m[2] ?? ""}`, {
          kind: args.kind,
          resolveDir: linkDir(id),
        });
        return r.errors.length ? { errors: r.errors } : { path: r.path };
      });
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        const from = args.importer ? owner(args.importer) : undefined;
        if (!from || args.path.startsWith("node:")) return undefined;
        const dep = from[1].dependencies.find((d) => {
          const name = graph.packages[d]?.name;
          return name && (args.path === name || args.path.startsWith(`${name}/`));
        });
        if (!dep) return undefined;
        const r = await build.resolve(args.path, { kind: args.kind, resolveDir: linkDir(dep) });
        return r.errors.length ? { errors: r.errors } : { path: r.path };
      });
    },
  };
}

/** Builds the bundle and the app into `outDir`; returns the module's path and size. */
export async function bundle(
  outDir = join(root, "dist"),
): Promise<{ path: string; bytes: number; app: string }> {
  await Deno.mkdir(outDir, { recursive: true });
  const path = join(outDir, "hdpissa.js");
  const app = join(outDir, "app.js");
  const graph = await npmGraph(["web.ts"]);
  const shim = await Deno.makeTempDir({ prefix: "bundle-npm-" });
  const common: esbuild.BuildOptions = {
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    sourcemap: true,
    logLevel: "warning",
  };
  try {
    await esbuild.build({
      ...common,
      entryPoints: [join(root, "web.ts")],
      outfile: path,
      plugins: [
        {
          name: "deno-only-modules",
          setup(build) {
            // The MPI group (FFI, a watchdog worker) is imported on demand in mode "mpi" only.
            build.onResolve(
              { filter: /mpi_group\.ts$/ },
              (args) => ({ path: args.path, external: true }),
            );
          },
        },
        npmFromDenoCache(graph, shim),
      ],
    });
    await esbuild.build({
      ...common,
      entryPoints: [join(root, "web", "app.ts")],
      outfile: app,
      plugins: [{
        name: "library-beside",
        setup(build) {
          // The app imports the library as the page loads it: the module beside it.
          build.onResolve(
            { filter: /^\.\.\/web\.ts$/ },
            () => ({ path: "./hdpissa.js", external: true }),
          );
        },
      }],
    });
  } finally {
    await esbuild.stop();
    await Deno.remove(shim, { recursive: true }).catch(() => {});
  }
  for await (const e of Deno.readDir(join(root, "web"))) {
    if (e.isFile && !e.name.endsWith(".ts")) {
      await Deno.copyFile(join(root, "web", e.name), join(outDir, e.name));
    }
  }
  const base = join(outDir, "models", "base");
  await Deno.mkdir(base, { recursive: true });
  for (const f of BASE_MODEL_FILES) {
    await Deno.copyFile(join(root, "models", "base", f), join(base, f));
  }
  return { path, bytes: (await Deno.stat(path)).size, app };
}

if (import.meta.main) {
  const out = Deno.args[0] ?? join(root, "dist");
  const { path, bytes } = await bundle(out);
  console.log(
    `${path}: ${(bytes / 1024).toFixed(0)} KiB; the app: ${join(out, "index.html")} ` +
      `(serve ${relative(Deno.cwd(), out) || "."}/ on localhost)`,
  );
}
