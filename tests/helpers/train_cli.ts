/** Runs `cli/train.ts` (or another CLI task) in a child Deno, as the CLI tests do. */

const TRAIN = new URL("../../cli/train.ts", import.meta.url).pathname;
const EVALUATE = new URL("../../cli/evaluate.ts", import.meta.url).pathname;

/** `deno run cli/train.ts args…` with piped output, not started (spawn it or await output()). */
export function trainCommand(
  args: string[],
  cli = TRAIN,
  permissions: string[] = [],
  env: Record<string, string> = {},
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", ...permissions, cli, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  });
}

/** Runs `deno task train args…` to the end: its exit code and decoded output. */
export async function train(
  args: string[],
  cli = TRAIN,
  permissions: string[] = [],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await trainCommand(args, cli, permissions, env).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** Runs `deno task evaluate args…` to the end: its exit code and decoded output. */
export const evaluate = (args: string[]) => train(args, EVALUATE);
