/**
 * The host process (runtime/host.ts): Mesa's CPU drivers get twice as many threads as cores while
 * a device is opened, unless the user chose a number or several MPI ranks share the node; the
 * variable is gone again afterwards (processes this one starts choose for themselves), and nothing
 * is set (nor prompted for) without access to the environment. Each case runs in a fresh process.
 */

import assert from "node:assert/strict";
import { lastLineOf, MOD_URL } from "../helpers/fresh_process.ts";

/**
 * What a fresh `deno run` with `env` and `flags` reports after opening `concurrent` devices at
 * once: the values it set LP_NUM_THREADS to, the variable's value afterwards, and the cores.
 */
async function afterOpen(
  env: Record<string, string>,
  flags: string[],
  concurrent = 1,
): Promise<{ set: string[]; after: string; cores: number }> {
  const source = `const set: string[] = [];
const access = (await Deno.permissions.query({ name: "env", variable: "LP_NUM_THREADS" })).state;
if (access === "granted") {
  const original = Deno.env.set.bind(Deno.env);
  Deno.env.set = (k: string, v: string) => {
    if (k === "LP_NUM_THREADS") set.push(v);
    original(k, v);
  };
}
const { gpu } = await import(${JSON.stringify(MOD_URL)});
await Promise.all(Array.from({ length: ${concurrent} }, () => gpu({})));
const after = access === "granted" ? Deno.env.get("LP_NUM_THREADS") ?? "(unset)" : "(no access)";
console.log(JSON.stringify({ set, after, cores: navigator.hardwareConcurrency }));\n`;
  return JSON.parse(await lastLineOf(source, env, flags));
}

Deno.test("Mesa gets twice the cores as threads while a device opens, unless the user chose or MPI ranks share the node", async () => {
  if (Deno.env.get("LP_NUM_THREADS") === undefined) {
    const { set, after, cores } = await afterOpen({}, ["-A"]);
    assert.deepEqual(set, [String(2 * cores)]);
    assert.equal(after, "(unset)", "removed again, so child processes choose for themselves");
    // Devices opened at once share the value; the last to finish removes it.
    const three = await afterOpen({}, ["-A"], 3);
    assert.deepEqual([three.set, three.after], [[String(2 * cores)], "(unset)"]);
    // One of several MPI ranks on this node: Mesa's own default (the ranks share the cores).
    for (const variable of ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]) {
      const ranked = await afterOpen({ [variable]: "4" }, ["-A"]);
      assert.deepEqual([ranked.set, ranked.after], [[], "(unset)"], variable);
    }
  }
  const chosen = await afterOpen({ LP_NUM_THREADS: "3" }, ["-A"]);
  assert.deepEqual([chosen.set, chosen.after], [[], "3"]);
  // Read access only: the device opens without a prompt (--no-prompt would fail the call).
  const readOnly = await afterOpen({}, ["--allow-read"]);
  assert.deepEqual([readOnly.set, readOnly.after], [[], "(no access)"]);
});
