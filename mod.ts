/**
 * Public face of the project: a functional tensor DSL (trace, grad, interpret), its compiler
 * passes, and — in later layers — the WebGPU backend and the HD-PiSSA trainer.
 *
 * @module
 */

export * from "./dsl/mod.ts";
export * from "./compiler/mod.ts";
export * from "./runtime/mod.ts";
