/**
 * Runs a script in a fresh `deno run` (for what a process decides once: Mesa's settings, defaults
 * read from the environment), never prompting for a permission.
 */

import assert from "node:assert/strict";

/** The root module's URL, for a fresh script's imports. */
export const MOD_URL = new URL("../../mod.ts", import.meta.url).href;

/**
 * The last line `source` prints when run as a fresh `deno run --no-prompt` with the permissions in
 * `flags` and `env` added to this process's environment; a failure fails the caller's test.
 */
export async function lastLineOf(
  source: string,
  env: Record<string, string>,
  flags: string[],
): Promise<string> {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(script, source);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...flags, script],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
  } finally {
    await Deno.remove(script);
  }
}
