/**
 * The kernel schedule for grouped dispatches (codegen/kernel_groups.ts): kernels that would share
 * a pipeline and do not depend on each other are made adjacent, so that they can run as one
 * dispatch. A kernel is moved up to an earlier one of its key only when everything it reads is
 * computed before that one, and only from within a window of following kernels, so the buffers it
 * writes are not held much longer than before.
 */

import type { Node } from "../dsl/mod.ts";
import type { KernelPlan } from "./fusion.ts";

/** The kernel plans in their new order, and each one's group (-1: none; members are adjacent). */
export interface GroupSchedule {
  plans: KernelPlan[];
  groups: number[];
}

/** Options of `scheduleGroups`. */
export interface ScheduleOptions {
  /** What decides a group: kernels with the same key can share a dispatch (undefined: none). */
  keyOf: (plan: KernelPlan, index: number) => string | undefined;
  /** Storage buffers a plan's kernel binds for itself in a group. */
  bindingsOf: (plan: KernelPlan, index: number) => number;
  /** Storage buffers a group binds once for all its members (placeholders). */
  sharedOf: (plan: KernelPlan, index: number) => number;
  /** Storage buffers a dispatch may bind. */
  maxStorageBuffers: number;
  /** How many kernels past a group's first member its members may come from. */
  window: number;
  /** Most members of one group. */
  maxMembers: number;
}

/**
 * Orders `plans` so that independent kernels of one key form groups of adjacent kernels. A
 * kernel joins the group of an earlier one when what it reads is computed before that one, or by
 * kernels between them that depend on no member: those move up, before the group.
 */
export function scheduleGroups(plans: readonly KernelPlan[], opts: ScheduleOptions): GroupSchedule {
  const producer = new Map<Node, number>();
  plans.forEach((p, i) => p.roots.forEach((r) => producer.set(r, i)));
  const inputs = plans.map((p) => [
    ...new Set(p.reads.map((n) => producer.get(n)).filter((i) => i !== undefined)),
  ]);
  const keys = plans.map((p, i) => opts.keyOf(p, i));
  const placed = new Array<boolean>(plans.length).fill(false);
  const out: KernelPlan[] = [], groups: number[] = [];
  let nextGroup = 0;
  /** The unplaced kernels `j` needs first, or undefined where one of them is in `members`. */
  const needs = (j: number, members: ReadonlySet<number>, before: ReadonlySet<number>) => {
    const found = new Set<number>(), stack = [...inputs[j]];
    while (stack.length) {
      const d = stack.pop()!;
      if (placed[d] || found.has(d) || before.has(d)) continue;
      if (members.has(d) || found.size >= opts.window) return undefined;
      found.add(d);
      stack.push(...inputs[d]);
    }
    return found;
  };
  /**
   * Places the unplaced kernels of `order` (ascending, closed under unplaced dependencies): each
   * with the later ones of its key it can group, after what those need first, which is placed the
   * same way (prerequisites pulled up by a group can form groups of their own).
   */
  const place = (order: readonly number[]) => {
    for (let x = 0; x < order.length; x++) {
      const i = order[x];
      if (placed[i]) continue;
      const members = new Set([i]), before = new Set<number>();
      const key = keys[i];
      let bindings = opts.bindingsOf(plans[i], i) + opts.sharedOf(plans[i], i);
      for (let y = x + 1; key !== undefined && y < order.length; y++) {
        const j = order[y];
        if (j >= i + opts.window || members.size >= opts.maxMembers) break;
        if (placed[j] || before.has(j) || keys[j] !== key) continue;
        const b = opts.bindingsOf(plans[j], j);
        if (bindings + b > opts.maxStorageBuffers) continue;
        const first = needs(j, members, before);
        if (!first) continue;
        first.forEach((d) => before.add(d));
        members.add(j);
        bindings += b;
      }
      place([...before].sort((a, b) => a - b));
      const group = members.size > 1 ? nextGroup++ : -1;
      for (const m of members) {
        placed[m] = true;
        out.push(plans[m]);
        groups.push(group);
      }
    }
  };
  place(plans.map((_, i) => i));
  return { plans: out, groups };
}
