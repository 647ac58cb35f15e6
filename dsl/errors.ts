/**
 * Errors that name the op, the shapes involved, and the user's call site.
 *
 * The call site is the first stack frame outside the library folders (dsl/, compiler/, runtime/,
 * mod.ts), so a shape error in a deep composite op still points at the user's line.
 */

const projectRoot = new URL("../", import.meta.url).href;
const libraryPrefixes = ["dsl/", "compiler/", "runtime/", "mod.ts"].map((p) => projectRoot + p);

function isLibraryFrame(file: string): boolean {
  return libraryPrefixes.some((p) => file.startsWith(p)) || file.startsWith("ext:") ||
    file.startsWith("node:") || file.includes("/npm/registry.npmjs.org/");
}

/** Extracts "file:line:column" of the first non-library frame of the current stack. */
export function userCallSite(): string | undefined {
  const saved = Error.stackTraceLimit;
  Error.stackTraceLimit = 100;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = saved;
  for (const line of stack.split("\n").slice(1)) {
    const match = line.match(/\(?((?:file|https?|data|blob):[^\s()]+?):(\d+):(\d+)\)?\s*$/);
    if (!match) continue;
    if (!isLibraryFrame(match[1])) return `${match[1]}:${match[2]}:${match[3]}`;
  }
  return undefined;
}

/** An error raised by an op or transformation; `message` ends with the user's call site. */
export class DslError extends Error {
  /** The op or transformation that raised it. */
  readonly op: string;
  /** The operands' shapes as `dtype[shape]` strings (may be empty). */
  readonly shapes: string[];
  /** "file:line:column" of the user's call, when one was found on the stack. */
  readonly callSite: string | undefined;
  /** The message without the op name and call site. */
  readonly detail: string;

  /** Makes the error, recording the user's call site from the current stack. */
  constructor(op: string, detail: string, shapes: string[] = []) {
    const callSite = userCallSite();
    super(`${op}: ${detail}${callSite ? `\n  at ${callSite}` : ""}`);
    this.name = "DslError";
    this.op = op;
    this.detail = detail;
    this.shapes = shapes;
    this.callSite = callSite;
  }
}
