/**
 * A generated kernel's storage bindings as text: the passes that rewrite whole kernels (epilogue
 * variants, grouped dispatches) read each declaration and write it back under another number or
 * name.
 */

/** A storage binding's declaration: `@group(0) @binding(i) var<access> name: type;`. */
const BINDING =
  /^@group\(0\) @binding\((\d+)\) var<(storage, read|storage, read_write)> (\w+): (.+);$/;

/** One storage binding of a kernel. */
export interface Binding {
  index: number;
  /** "storage, read" or "storage, read_write". */
  access: string;
  name: string;
  /** Its WGSL type, e.g. `array<vec4<f32>>`. */
  type: string;
}

/** The binding `line` declares, if it is a storage binding's declaration (not a sizes buffer's). */
export function parseBinding(line: string): Binding | undefined {
  const m = UNIFORM.test(line) ? null : BINDING.exec(line);
  return m ? { index: +m[1], access: m[2], name: m[3], type: m[4] } : undefined;
}

/**
 * A kernel's uniform declaration, `@group(0) @binding(i) var<uniform> name: array<vec4<i32>, n>;`,
 * or its sizes in a read-only storage buffer (`var<storage, read>`, shape_params.ts `ShapeBuffer`):
 * a fixed-size array, where storage bindings of data are runtime-sized.
 */
const UNIFORM =
  /^@group\(0\) @binding\((\d+)\) var<(?:uniform|storage, read)> (\w+): array<vec4<i32>, (\d+)>;$/;

/**
 * A kernel's uniform (its sizes, or a group's table; its sizes may be a storage buffer instead):
 * binding, name and length in vec4s.
 */
export interface UniformBinding {
  index: number;
  name: string;
  vec4s: number;
}

/** The uniform `line` declares, if it is a uniform's declaration. */
export function parseUniform(line: string): UniformBinding | undefined {
  const m = UNIFORM.exec(line);
  return m ? { index: +m[1], name: m[2], vec4s: +m[3] } : undefined;
}

/** `b`'s declaration at binding `index`, under `name`. */
export const declaration = (b: Binding, index: number, name = b.name) =>
  `@group(0) @binding(${index}) var<${b.access}> ${name}: ${b.type};`;
