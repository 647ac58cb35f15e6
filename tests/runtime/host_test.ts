/**
 * The host process (runtime/host.ts): Mesa's CPU drivers get twice as many threads as cores unless
 * the user chose a number, and nothing is set (nor prompted for) without access to the
 * environment. Each case runs in a fresh process, since Mesa reads the number once.
 */

import assert from "node:assert/strict";

/** `LP_NUM_THREADS|cores` after opening the default device in a fresh `deno run`. */
async function threadsAfterOpen(env: Record<string, string>, flags: string[]): Promise<string> {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { gpu } from ${JSON.stringify(new URL("../../mod.ts", import.meta.url).href)};
await gpu();
let v = "(no access)";
if ((await Deno.permissions.query({ name: "env", variable: "LP_NUM_THREADS" })).state === "granted") {
  v = Deno.env.get("LP_NUM_THREADS") ?? "(unset)";
}
console.log(v + "|" + navigator.hardwareConcurrency);\n`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...flags, script],
      env,
      clearEnv: false,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
  } finally {
    await Deno.remove(script);
  }
}

Deno.test("Mesa gets twice the cores as threads unless the user chose or MPI ranks share the node, and nothing without env access", async () => {
  const unset = Deno.env.get("LP_NUM_THREADS") === undefined;
  if (unset) {
    const [threads, cores] = (await threadsAfterOpen({}, ["-A"])).split("|");
    assert.equal(threads, String(2 * Number(cores)));
  }
  assert.equal((await threadsAfterOpen({ LP_NUM_THREADS: "3" }, ["-A"])).split("|")[0], "3");
  // One of several MPI ranks on this node: Mesa's own default (they share the cores).
  for (const variable of ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]) {
    const ranked = await threadsAfterOpen({ [variable]: "4" }, ["-A"]);
    if (unset) assert.equal(ranked.split("|")[0], "(unset)", variable);
  }
  // Read access only: the device opens without a prompt (--no-prompt would fail the call).
  const readOnly = await threadsAfterOpen({}, ["--allow-read"]);
  assert.equal(readOnly.split("|")[0], "(no access)");
});
