/**
 * Pytrees: arrays and plain objects of leaves, as in JAX. Object keys are visited in sorted
 * order so that two records with the same keys always flatten the same way; `null` and
 * `undefined` are empty subtrees.
 */

export type TreeDef =
  | { kind: "leaf" }
  | { kind: "none"; value: null | undefined }
  | { kind: "array"; children: TreeDef[] }
  | { kind: "object"; keys: string[]; children: TreeDef[] };

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== "object" || x === null) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** Flattens `tree` into leaves (those for which `isLeaf` holds) and a structure description. */
export function flattenTree<L>(
  tree: unknown,
  isLeaf: (x: unknown) => x is L,
  where = "pytree",
): [L[], TreeDef] {
  const leaves: L[] = [];
  const walk = (x: unknown, path: string): TreeDef => {
    if (isLeaf(x)) {
      leaves.push(x);
      return { kind: "leaf" };
    }
    if (x === null || x === undefined) return { kind: "none", value: x };
    if (Array.isArray(x)) {
      return { kind: "array", children: x.map((c, i) => walk(c, `${path}[${i}]`)) };
    }
    if (isPlainObject(x)) {
      const keys = Object.keys(x).sort();
      return { kind: "object", keys, children: keys.map((k) => walk(x[k], `${path}.${k}`)) };
    }
    const what = typeof x === "object" ? (x.constructor?.name ?? "object") : typeof x;
    throw new Error(`${where}: unsupported value of type ${what} at ${path}`);
  };
  const def = walk(tree, "args");
  return [leaves, def];
}

/** Rebuilds a tree of the structure `def` from leaves in flattening order. */
export function unflattenTree<L>(def: TreeDef, leaves: readonly L[]): unknown {
  let i = 0;
  const build = (d: TreeDef): unknown => {
    switch (d.kind) {
      case "leaf":
        if (i >= leaves.length) throw new Error("unflattenTree: too few leaves");
        return leaves[i++];
      case "none":
        return d.value;
      case "array":
        return d.children.map(build);
      case "object": {
        const out: Record<string, unknown> = {};
        d.keys.forEach((k, j) => (out[k] = build(d.children[j])));
        return out;
      }
      default:
        return d satisfies never;
    }
  };
  const out = build(def);
  if (i !== leaves.length) throw new Error("unflattenTree: too many leaves");
  return out;
}

export function treeLeafCount(def: TreeDef): number {
  switch (def.kind) {
    case "leaf":
      return 1;
    case "none":
      return 0;
    default:
      return def.children.reduce((n, c) => n + treeLeafCount(c), 0);
  }
}

export function treeToString(def: TreeDef): string {
  switch (def.kind) {
    case "leaf":
      return "*";
    case "none":
      return String(def.value);
    case "array":
      return `[${def.children.map(treeToString).join(", ")}]`;
    case "object":
      return `{${def.keys.map((k, i) => `${k}: ${treeToString(def.children[i])}`).join(", ")}}`;
  }
}

export function treesEqual(a: TreeDef, b: TreeDef): boolean {
  return treeToString(a) === treeToString(b);
}
