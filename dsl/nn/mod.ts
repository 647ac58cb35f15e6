/** Layers and decoder models as pure functions of Hugging Face-named parameter records. */
export * from "./layers.ts";
export * from "./config.ts";
export * from "./transformer.ts";
export * from "./decode.ts";
