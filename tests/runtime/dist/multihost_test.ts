/**
 * Two simulated hosts on one machine: network namespaces joined by a veth pair (10.77.x.1 and
 * 10.77.x.2), `ip netns exec` standing in for ssh, OpenMPI over TCP restricted to that subnet —
 * the multi-host recipe of docs/distributed.md. The ranks must see different addresses, train the
 * same W bitwise, and match mode "virtual".
 *
 * Needs root and `ip netns` (CAP_NET_ADMIN); where the machine refuses, the test says so and is
 * skipped. The namespaces are removed afterwards whatever happens.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { readSafetensors } from "../../../runtime/io/safetensors.ts";
import { createTrainer } from "../../../runtime/trainer.ts";
import { distProblem } from "../../helpers/dist_problem.ts";

const here = new URL(".", import.meta.url).pathname;
const tag = `hd${Deno.pid % 100000}`;
const subnet = `10.77.${Deno.pid % 250}`;
const hosts = [`${subnet}.1`, `${subnet}.2`];
const spaces = [`${tag}a`, `${tag}b`];

function sh(args: string[]): { ok: boolean; text: string } {
  try {
    const out = new Deno.Command(args[0], { args: args.slice(1), stdout: "piped", stderr: "piped" })
      .outputSync();
    const dec = new TextDecoder();
    return { ok: out.success, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
  } catch (e) {
    return { ok: false, text: String(e) };
  }
}

function teardown() {
  for (const ns of spaces) sh(["ip", "netns", "del", ns]);
}

/** Creates the two "hosts"; returns why not, if the machine refuses. */
function setup(): string | undefined {
  const hasMpirun = sh(["mpirun", "--version"]).ok;
  if (!hasMpirun) return "mpirun not found";
  const steps = [
    ["ip", "netns", "add", spaces[0]],
    ["ip", "netns", "add", spaces[1]],
    ["ip", "link", "add", `${tag}x`, "type", "veth", "peer", "name", `${tag}y`],
    ["ip", "link", "set", `${tag}x`, "netns", spaces[0]],
    ["ip", "link", "set", `${tag}y`, "netns", spaces[1]],
    ["ip", "-n", spaces[0], "addr", "add", `${hosts[0]}/24`, "dev", `${tag}x`],
    ["ip", "-n", spaces[1], "addr", "add", `${hosts[1]}/24`, "dev", `${tag}y`],
    ["ip", "-n", spaces[0], "link", "set", `${tag}x`, "up"],
    ["ip", "-n", spaces[1], "link", "set", `${tag}y`, "up"],
    ["ip", "-n", spaces[0], "link", "set", "lo", "up"],
    ["ip", "-n", spaces[1], "link", "set", "lo", "up"],
  ];
  for (const step of steps) {
    const r = sh(step);
    if (!r.ok) {
      teardown();
      return `\`${step.join(" ")}\` failed: ${r.text.trim()}`;
    }
  }
  return undefined;
}

const refused = setup();
if (refused) console.warn(`multi-host test skipped: network namespaces unavailable (${refused})`);

Deno.test({
  name:
    'mpi across two simulated hosts (network namespaces, TCP): replicas equal, W = mode "virtual"',
  ignore: refused !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "multihost-" });
    try {
      // The ssh stand-in: `agent HOST "command"` runs the command in that host's namespace.
      const agent = join(dir, "agent.sh");
      await Deno.writeTextFile(
        agent,
        `#!/bin/sh\nhost=$1; shift\ncase $host in ${hosts[0]}) ns=${spaces[0]};; ${hosts[1]}) ns=${
          spaces[1]
        };; *) exit 255;; esac\nexec ip netns exec $ns sh -c "$*"\n`,
      );
      await Deno.chmod(agent, 0o755);
      const job = { method: "hdpissa", devices: 2, rank: 2, steps: 3, out: dir, verifyEvery: 1 };
      const cmd = new Deno.Command("ip", {
        args: [
          ...["netns", "exec", spaces[0], "mpirun", "--allow-run-as-root", "--bind-to", "none"],
          ...["--host", hosts.join(","), "-np", "2", "--mca", "plm_rsh_agent", agent],
          ...["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", `${subnet}.0/24`],
          ...[
            "--mca",
            "oob_tcp_if_include",
            `${subnet}.0/24`,
            "-x",
            "XDG_RUNTIME_DIR",
            "-x",
            "DENO_DIR",
          ],
          ...[
            Deno.execPath(),
            "run",
            "--allow-ffi",
            "--allow-env",
            "--allow-read",
            "--allow-write",
          ],
          ...["--allow-sys", join(here, "mpi_worker.ts"), JSON.stringify(job)],
        ],
        env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      });
      const out = await cmd.output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, text);
      const ranks = await Promise.all(
        [0, 1].map(async (r) => JSON.parse(await Deno.readTextFile(join(dir, `rank${r}.json`)))),
      );
      assert.ok(ranks[0].addresses.includes(hosts[0]), JSON.stringify(ranks[0].addresses));
      assert.ok(ranks[1].addresses.includes(hosts[1]), JSON.stringify(ranks[1].addresses));
      assert.equal(ranks[1].hash, ranks[0].hash, "replicas differ across hosts");
      const { config, batches } = distProblem({ method: "hdpissa", devices: 2, rank: 2, steps: 3 });
      const virtual = await createTrainer(config);
      for (const b of batches) await virtual.step(b);
      const want = await virtual.params();
      const got = await readSafetensors(join(dir, "params.safetensors"));
      for (const [name, w] of Object.entries(want)) {
        let d = 0;
        for (let i = 0; i < w.data.length; i++) {
          d = Math.max(d, Math.abs(w.data[i] - got[name].data[i]));
        }
        assert.ok(d < 2e-5, `${name}: ${d}`);
      }
    } finally {
      teardown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

if (refused === undefined) globalThis.addEventListener("unload", teardown);
