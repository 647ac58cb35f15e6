/**
 * A headless Chromium driven over the DevTools protocol (a WebSocket; no driver binary): serve a
 * folder on localhost (a secure context, as WebGPU requires), open a page, then await JS
 * expressions, set files on file inputs, take screenshots and receive downloads.
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

/** An open page: DevTools commands and helpers over them. */
export interface BrowserPage {
  /** What the page logged (console calls and uncaught exceptions). */
  readonly console: string[];
  /** Sends a DevTools command to the page; rejects with the protocol's error. */
  send(method: string, params?: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** The value of `expression` in the page (promises awaited, returned by value). */
  evaluate<T = unknown>(expression: string): Promise<T>;
  /** Polls `expression` every 100 ms until it is truthy; returns its value. */
  waitFor<T = unknown>(expression: string, timeoutMs?: number): Promise<T>;
  /** Sets `paths` (files on this machine) on the file input `selector`, as a user choosing them. */
  setInputFiles(selector: string, paths: string[]): Promise<void>;
  /** A PNG of the whole page. */
  screenshot(): Promise<Uint8Array>;
}

/** Options of `withChromium`. */
export interface ChromiumOptions {
  /** Overall limit (default 120 s). */
  timeoutMs?: number;
  /** Chromium flags (default WEBGPU_FLAGS). */
  flags?: string[];
  /** Where downloads go (default: downloads are refused). */
  downloadDir?: string;
  /** Window size (default 1280×900). */
  window?: [number, number];
}

const TYPES: Record<string, string> = {
  js: "text/javascript",
  html: "text/html",
  json: "application/json",
  jsonl: "application/jsonl",
  map: "application/json",
};

/**
 * Serves `dir`, opens `page` in headless Chromium and runs `fn` with it; the browser and the
 * server are closed afterwards, and `fn` fails when the overall time limit passes.
 */
export async function withChromium<T>(
  dir: string,
  page: string,
  fn: (page: BrowserPage) => Promise<T>,
  opts: ChromiumOptions = {},
): Promise<T> {
  if (!CHROMIUM) throw new Error("no Chromium found (apt-get install chromium)");
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const path = join(dir, decodeURIComponent(new URL(req.url).pathname));
    try {
      const body = await Deno.readFile(path);
      const type = TYPES[path.split(".").at(-1)!] ?? "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const profile = await Deno.makeTempDir({ prefix: "chromium-" });
  const [w, h] = opts.window ?? [1280, 900];
  const child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless=new",
      "--no-sandbox",
      "--no-first-run",
      "--disable-dev-shm-usage",
      `--window-size=${w},${h}`,
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      ...(opts.flags ?? WEBGPU_FLAGS),
      "about:blank",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const sockets: WebSocket[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
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
    const connect = async (url: string) => {
      const ws = new WebSocket(url);
      sockets.push(ws);
      await new Promise((r, e) => (ws.onopen = r, ws.onerror = e));
      let next = 0;
      const pending = new Map<number, (m: Record<string, unknown>) => void>();
      const listeners: ((m: { method: string; params: Record<string, unknown> }) => void)[] = [];
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.id !== undefined) pending.get(msg.id)?.(msg);
        else listeners.forEach((l) => l(msg));
      };
      const send = (method: string, params: Record<string, unknown> = {}) =>
        new Promise<Record<string, unknown>>((resolve, reject) => {
          const id = next++;
          pending.set(id, (msg) => {
            pending.delete(id);
            if (msg.error) {
              reject(new Error(`${method}: ${JSON.stringify(msg.error)}`));
            } else resolve(msg.result as Record<string, unknown>);
          });
          ws.send(JSON.stringify({ id, method, params }));
        });
      return { send, listeners };
    };
    const version = await (await fetch(`http://127.0.0.1:${port}/json/version`)).json();
    const browser = await connect(version.webSocketDebuggerUrl);
    if (opts.downloadDir) {
      await browser.send("Browser.setDownloadBehavior", {
        behavior: "allow",
        downloadPath: opts.downloadDir,
      });
    }
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const target = targets.find((t: { type: string }) => t.type === "page");
    const { send, listeners } = await connect(target.webSocketDebuggerUrl);
    const consoleLines: string[] = [];
    listeners.push((msg) => {
      if (msg.method === "Runtime.consoleAPICalled") {
        const args = msg.params.args as { value?: unknown; description?: string }[];
        consoleLines.push(args.map((a) => String(a.value ?? a.description)).join(" "));
      } else if (msg.method === "Runtime.exceptionThrown") {
        consoleLines.push(
          `exception: ${JSON.stringify(msg.params.exceptionDetails).slice(0, 500)}`,
        );
      }
    });
    await send("Runtime.enable");
    await send("Page.enable");
    const evaluate = async <V>(expression: string): Promise<V> => {
      const result = await send("Runtime.evaluate", {
        expression,
        awaitPromise: true,
        returnByValue: true,
      }) as { result?: { value?: unknown }; exceptionDetails?: unknown };
      if (result.exceptionDetails) {
        throw new Error(`page threw: ${JSON.stringify(result.exceptionDetails).slice(0, 1000)}`);
      }
      return result.result?.value as V;
    };
    const api: BrowserPage = {
      console: consoleLines,
      send,
      evaluate,
      async waitFor<V>(expression: string, timeoutMs = deadline - Date.now()) {
        const until = Math.min(deadline, Date.now() + timeoutMs);
        while (true) {
          const v = await evaluate<V>(expression);
          if (v) return v;
          if (Date.now() > until) {
            throw new Error(
              `waited ${timeoutMs} ms for ${expression}; console: ${consoleLines.join(" | ")}`,
            );
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      },
      async setInputFiles(selector: string, paths: string[]) {
        const found = await send("Runtime.evaluate", {
          expression: `document.querySelector(${JSON.stringify(selector)})`,
        }) as { result: { objectId?: string } };
        if (!found.result.objectId) throw new Error(`no element ${selector}`);
        await send("DOM.setFileInputFiles", { files: paths, objectId: found.result.objectId });
      },
      async screenshot() {
        const shot = await send("Page.captureScreenshot", {
          format: "png",
          captureBeyondViewport: true,
        }) as { data: string };
        return Uint8Array.from(atob(shot.data), (c) => c.charCodeAt(0));
      },
    };
    const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/${page}`;
    const loaded = new Promise<void>((resolve) =>
      listeners.push((msg) => msg.method === "Page.loadEventFired" && resolve())
    );
    await send("Page.navigate", { url });
    await loaded;
    return await Promise.race([
      fn(api),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `the page did not finish within ${opts.timeoutMs ?? 120_000} ms; console: ${
                  consoleLines.join(" | ")
                }`,
              ),
            ),
          Math.max(0, deadline - Date.now()),
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    sockets.forEach((ws) => ws.close());
    child.kill("SIGKILL");
    await child.status;
    await server.shutdown();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
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
  return await withChromium(dir, page, async (p) => {
    const value = await p.evaluate(`new Promise((resolve) => { const poll = () => {
      const v = (${expression}); v !== undefined ? resolve(v) : setTimeout(poll, 100); }; poll(); })`);
    return { value, console: p.console };
  }, opts);
}
