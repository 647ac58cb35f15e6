import {
  add,
  array,
  crossEntropy,
  exp,
  grad,
  interpret,
  jit,
  matmul,
  mul,
  softmax,
  sum,
  take,
  tanh,
} from "../mod.ts";
const f = (w: any, x: any) => sum(tanh(matmul(x, w)));
const W = array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]);
const X = array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]);
const jg = jit(grad(f));
console.log(String(await jg.lower(W, X)));
console.log(await jg(W, X));
console.log(interpret(grad(f), W, X).data);
const sm = jit((z: any) => softmax(z));
console.log(String(await sm.lower(array([[1, 2, 3]]))));
console.log((await sm(array([[1, 2, 3], [4, 5, 7]]))).data);
const ce = jit((z: any, l: any) => crossEntropy(z, l));
console.log(
  (await ce(array([[1, 2, 3], [0, 0, 0]]), array([2, 0], { dtype: "i32" }))).data,
  interpret(
    (z: any, l: any) => crossEntropy(z, l),
    array([[1, 2, 3], [0, 0, 0]]),
    array([2, 0], { dtype: "i32" }),
  ).data,
);
const abc = jit((a: any, b: any, c: any) => add(add(a, b), c));
console.log(String(await abc.lower(X, X, X)));
