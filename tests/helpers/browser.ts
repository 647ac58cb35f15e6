/**
 * A headless Chromium driven over the DevTools protocol (a WebSocket; no driver binary): serve a
 * folder on localhost (a secure context, as WebGPU requires), open a page, await a JS expression.
 */

import { join } from "node:path";

export const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
  .find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });

/** Flags that expose WebGPU headless on a machine without a GPU (SwiftShader's Vulkan). */
export const WEBGPU_FLAGS = [
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--use-angle=swiftshader",
  "--ignore-gpu-blocklist",
];

export interface PageRun {
  value: unknown;
  console: string[];
}

/**
 * Serves `dir`, opens `page` in headless Chromium and returns the value of `expression` (awaited,
 * by value) once it is defined, within `timeoutMs`.
 */
export async function runInChromium(
  dir: string,
  page: string,
  expression: string,
  opts: { timeoutMs?: number; flags?: string[] } = {},
): Promise<PageRun> {
  if (!CHROMIUM) throw new Error("no Chromium found (apt-get install chromium)");
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const path = join(dir, decodeURIComponent(new URL(req.url).pathname));
    try {
      const body = await Deno.readFile(path);
      const type = path.endsWith(".js")
        ? "text/javascript"
        : path.endsWith(".html")
        ? "text/html"
        : "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const profile = await Deno.makeTempDir({ prefix: "chromium-" });
  const child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless=new",
      "--no-sandbox",
      "--no-first-run",
      "--disable-dev-shm-usage",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      ...(opts.flags ?? WEBGPU_FLAGS),
      "about:blank",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  try {
    // Chromium writes its DevTools port into the profile once it listens.
    let port = "";
    while (!port) {
      if (Date.now() > deadline) throw new Error("Chromium did not start its DevTools endpoint");
      try {
        port = (await Deno.readTextFile(join(profile, "DevToolsActivePort"))).split("\n")[0];
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const target = targets.find((t: { type: string }) => t.type === "page");
    const ws = new WebSocket(target.webSocketDebuggerUrl);
    await new Promise((r, e) => (ws.onopen = r, ws.onerror = e));
    let next = 0;
    const pending = new Map<number, (m: Record<string, unknown>) => void>();
    const consoleLines: string[] = [];
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.id !== undefined) pending.get(msg.id)?.(msg);
      else if (msg.method === "Runtime.consoleAPICalled") {
        consoleLines.push(
          msg.params.args.map((a: { value?: unknown }) => String(a.value)).join(" "),
        );
      } else if (msg.method === "Runtime.exceptionThrown") {
        consoleLines.push(
          `exception: ${JSON.stringify(msg.params.exceptionDetails).slice(0, 500)}`,
        );
      }
    };
    const send = (method: string, params: Record<string, unknown> = {}) =>
      new Promise<Record<string, unknown>>((resolve) => {
        const id = next++;
        pending.set(id, resolve);
        ws.send(JSON.stringify({ id, method, params }));
      });
    await send("Runtime.enable");
    const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/${page}`;
    await send("Page.navigate", { url });
    const waitFor = `new Promise((resolve) => { const poll = () => { const v = (${expression});
      v !== undefined ? resolve(v) : setTimeout(poll, 100); }; poll(); })`;
    const remaining = deadline - Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = await Promise.race([
      send("Runtime.evaluate", { expression: waitFor, awaitPromise: true, returnByValue: true }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `page did not finish within ${remaining} ms; console: ${consoleLines.join(" | ")}`,
              ),
            ),
          remaining,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    ws.close();
    const result = reply.result as { result?: { value?: unknown }; exceptionDetails?: unknown };
    if (result.exceptionDetails) {
      throw new Error(`page threw: ${JSON.stringify(result.exceptionDetails).slice(0, 1000)}`);
    }
    return { value: result.result?.value, console: consoleLines };
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await server.shutdown();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}
