/** Graph → Graph passes, and `optimize`, which runs them to a fixed point. */

import type { Graph } from "../../dsl/mod.ts";
import { eliminateCommonSubexpressions } from "./cse.ts";
import { eliminateDeadCode } from "./dce.ts";
import { foldConstants } from "./fold.ts";
import { reassociateMatmuls } from "./reassociate.ts";
import { sinkReshapes } from "./sink_reshapes.ts";

export {
  eliminateCommonSubexpressions,
  eliminateDeadCode,
  foldConstants,
  reassociateMatmuls,
  sinkReshapes,
};
export { splatValue } from "./fold.ts";
export {
  chunking,
  matmulSlices,
  splitLargeWork,
  type SplitSizes,
  summationLength,
} from "./split.ts";
export { type Emitter, type NodeRewrite, rewriteGraph } from "./rewrite.ts";

/**
 * Folding, CSE, matmul reassociation and DCE until the graph stops shrinking (a few rounds), then
 * reshapes sunk below matmul epilogues (so fusion can absorb them). With `reassociate: false`
 * products keep their order, and every value its bits.
 */
export function optimize(graph: Graph, opts: { reassociate?: boolean } = {}): Graph {
  const reassociate = opts.reassociate === false ? (g: Graph) => g : reassociateMatmuls;
  let g = graph;
  for (let round = 0; round < 8; round++) {
    const simplified = eliminateCommonSubexpressions(foldConstants(g));
    const next = eliminateDeadCode(reassociate(simplified));
    const done = next.nodes.length === g.nodes.length;
    g = next;
    if (done) break;
  }
  return eliminateDeadCode(sinkReshapes(g));
}
