/** Method forms on Tensor (`x.add(y)`, `x.sum(-1)`), delegating to the module-level ops. */

import type { DType } from "./dtype.ts";
import { Tensor } from "./trace.ts";
import type { TensorLike } from "./ops/coerce.ts";
import * as ew from "./ops/elementwise.ts";
import * as red from "./ops/reduce.ts";
import * as shp from "./ops/shape.ts";
import { matmul } from "./ops/linalg.ts";

declare module "./trace.ts" {
  interface Tensor {
    add(y: TensorLike): Tensor;
    sub(y: TensorLike): Tensor;
    mul(y: TensorLike): Tensor;
    div(y: TensorLike): Tensor;
    pow(y: TensorLike): Tensor;
    neg(): Tensor;
    exp(): Tensor;
    log(): Tensor;
    sqrt(): Tensor;
    tanh(): Tensor;
    abs(): Tensor;
    square(): Tensor;
    matmul(y: TensorLike): Tensor;
    sum(axes?: red.Axes, opts?: red.ReduceOptions): Tensor;
    mean(axes?: red.Axes, opts?: red.ReduceOptions): Tensor;
    max(axes?: red.Axes, opts?: red.ReduceOptions): Tensor;
    reshape(shape: readonly number[]): Tensor;
    transpose(perm?: readonly number[]): Tensor;
    cast(dtype: DType): Tensor;
  }
}

const proto = Tensor.prototype;
proto.add = function (y) {
  return ew.add(this, y);
};
proto.sub = function (y) {
  return ew.sub(this, y);
};
proto.mul = function (y) {
  return ew.mul(this, y);
};
proto.div = function (y) {
  return ew.div(this, y);
};
proto.pow = function (y) {
  return ew.pow(this, y);
};
proto.neg = function () {
  return ew.neg(this);
};
proto.exp = function () {
  return ew.exp(this);
};
proto.log = function () {
  return ew.log(this);
};
proto.sqrt = function () {
  return ew.sqrt(this);
};
proto.tanh = function () {
  return ew.tanh(this);
};
proto.abs = function () {
  return ew.abs(this);
};
proto.square = function () {
  return ew.square(this);
};
proto.matmul = function (y) {
  return matmul(this, y);
};
proto.sum = function (axes, opts) {
  return red.sum(this, axes, opts);
};
proto.mean = function (axes, opts) {
  return red.mean(this, axes, opts);
};
proto.max = function (axes, opts) {
  return red.max(this, axes, opts);
};
proto.reshape = function (shape) {
  return shp.reshape(this, shape);
};
proto.transpose = function (perm) {
  return shp.transpose(this, perm);
};
proto.cast = function (dtype) {
  return ew.cast(this, dtype);
};
