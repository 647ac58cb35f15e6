/** Graph → Graph passes, and `optimize`, which runs them to a fixed point. */

import type { Graph } from "../../dsl/mod.ts";
import { eliminateCommonSubexpressions } from "./cse.ts";
import { eliminateDeadCode } from "./dce.ts";
import { foldConstants } from "./fold.ts";

export { eliminateCommonSubexpressions, eliminateDeadCode, foldConstants };
export { splatValue } from "./fold.ts";
export { rewriteGraph } from "./rewrite.ts";

/** Folding, CSE and DCE until the graph stops shrinking (a few rounds at most). */
export function optimize(graph: Graph): Graph {
  let g = graph;
  for (let round = 0; round < 8; round++) {
    const next = eliminateDeadCode(eliminateCommonSubexpressions(foldConstants(g)));
    if (next.nodes.length === g.nodes.length) return next;
    g = next;
  }
  return g;
}
