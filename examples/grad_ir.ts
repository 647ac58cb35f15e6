/**
 * The first research script: define a loss as a plain function, look at the IR of its gradient,
 * and evaluate it on the CPU reference.
 *
 *   deno run examples/grad_ir.ts
 */

import {
  array,
  grad,
  interpret,
  matmul,
  mean,
  optimize,
  square,
  sub,
  tanh,
  type Tensor,
  toNested,
  trace,
} from "../mod.ts";

// A one-hidden-layer regression loss with parameters in a record (a pytree).
type Params = { w1: Tensor; w2: Tensor };
const loss = (p: Params, x: Tensor, y: Tensor) =>
  mean(square(sub(matmul(tanh(matmul(x, p.w1)), p.w2), y)));

const params = {
  w1: array([[0.5, -0.2, 0.1], [0.3, 0.8, -0.5]]),
  w2: array([[1.0], [-1.0], [0.5]]),
};
const x = array([[1, 2], [0.5, -1], [-1.5, 0.25], [2, 0]]);
const y = array([[1], [0], [-1], [0.5]]);

const dLoss = grad(loss);
const graph = trace(dLoss, params, x, y);
console.log("IR of grad(loss):\n" + String(graph));
console.log(
  `\nafter optimize (${graph.equationCount} → ${optimize(graph).equationCount} equations):\n` +
    String(optimize(graph)),
);

console.log("\nloss:", toNested(interpret(loss, params, x, y)));
const g = interpret(dLoss, params, x, y);
console.log("dloss/dw1:", JSON.stringify(toNested(g.w1)));
console.log("dloss/dw2:", JSON.stringify(toNested(g.w2)));
