/**
 * The autotuner's store under Deno: one JSON file of choices keyed by adapter, candidates and
 * shape class, at `$HDPISSA_CACHE_DIR/autotune.json`, else `$XDG_CACHE_HOME/hdpissa/autotune.json`,
 * else `~/.cache/hdpissa/autotune.json`. It is written whole through a temporary file renamed over
 * it, so it is never half-written. An unreadable file is tuned again and rewritten; a directory
 * that cannot be written to (or no permission) keeps the choices in memory only.
 */

import type { MatmulChoice } from "../../compiler/mod.ts";
import type { TuneStore } from "../autotune.ts";

/** The default file, or undefined where the environment names no cache directory. */
export function defaultTuneFile(): string | undefined {
  try {
    const home = Deno.env.get("HOME");
    const dir = Deno.env.get("HDPISSA_CACHE_DIR") ??
      (Deno.env.get("XDG_CACHE_HOME") ?? (home ? `${home}/.cache` : undefined))?.concat("/hdpissa");
    return dir ? `${dir}/autotune.json` : undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

/** A store in `file` (default `defaultTuneFile()`, resolved at first use). */
export function fileTuneStore(file?: string): TuneStore {
  const path = () => file ?? defaultTuneFile();
  return {
    load(): Record<string, MatmulChoice> {
      const at = path();
      if (!at) return {};
      try {
        const entries = JSON.parse(Deno.readTextFileSync(at));
        return typeof entries === "object" && entries !== null ? entries : {};
      } catch {
        return {};
      }
    },
    save(entries: Record<string, MatmulChoice>): void {
      const at = path();
      if (!at) return;
      const tmp = `${at}.${Deno.pid}.tmp`;
      try {
        Deno.mkdirSync(at.slice(0, at.lastIndexOf("/")) || ".", { recursive: true });
        Deno.writeTextFileSync(tmp, JSON.stringify(entries, null, 1));
        Deno.renameSync(tmp, at);
      } catch {
        try {
          Deno.removeSync(tmp);
        } catch { /* never written */ }
      }
    },
  };
}
