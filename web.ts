/**
 * The browser build's entry (`deno task bundle` → dist/hdpissa.js): the DSL, the compiler and the
 * WebGPU runtime with the trainer — everything of `mod.ts` that needs no file system, FFI or npm
 * package. Mode "mpi" stays in Deno (its module is left out of the bundle and loaded on demand).
 *
 * @module
 */

export * from "./dsl/mod.ts";
export * from "./compiler/mod.ts";
export * from "./runtime/core.ts";
