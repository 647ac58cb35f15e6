/** The "file:line" of the caller, for pinning the call site that error messages report. */
export function callerLine(): string {
  const frames = (new Error().stack ?? "").split("\n");
  // frames[0] = "Error", [1] = this function, [2] = the caller.
  const m = frames[2]?.match(/(file:[^\s()]+?):(\d+):\d+\)?$/);
  if (!m) throw new Error("callerLine: cannot parse stack");
  return `${m[1]}:${m[2]}`;
}
