/** Registers every primitive. Import this module before tracing anything. */
import "./elementwise.ts";
import "./special.ts";
import "./reduce.ts";
import "./matmul.ts";
import "./shape_ops.ts";
import "./indexing.ts";
