/**
 * The host process seen from code that also runs in a browser: Deno's namespace read through
 * globalThis (the browser build has none, and must not name it), and permissions asked without
 * prompting.
 */

/** Deno's namespace, or undefined outside Deno. */
export const denoNamespace = (): typeof Deno | undefined =>
  (globalThis as { Deno?: typeof Deno }).Deno;

/**
 * Whether a permission is granted already. Queried, never requested: an ungranted permission
 * would otherwise prompt on a terminal. False outside Deno.
 */
export function permissionGranted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return denoNamespace()?.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}
