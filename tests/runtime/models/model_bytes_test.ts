/**
 * Model folders as bytes (runtime/models/model_bytes.ts, shared by `loadModel` and the browser):
 * the same model from the disk, from memory, from `File`-like objects and over HTTP; the bytes
 * `modelFileBytes` and `loraAdapterFileBytes` make are exactly what `saveModel` and
 * `saveLoraAdapter` write; the tokenizer files keep Hugging Face's precedence; ZIP archives round
 * trip and agree with Info-ZIP and Python's zipfile where those are installed.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { HostArray } from "../../../dsl/host_array.ts";
import { initParams } from "../../../dsl/nn/transformer.ts";
import { parseSafetensors } from "../../../runtime/io/safetensors_format.ts";
import { crc32, unzipFiles, zipFiles } from "../../../runtime/io/zip.ts";
import {
  fileListFiles,
  loadModelFiles,
  memoryFiles,
  modelFileBytes,
  readModelTokenizer,
  tokenizerFileBytes,
  urlFiles,
} from "../../../runtime/models/model_bytes.ts";
import { folderFiles, loadModel, saveModel } from "../../../runtime/models/model_dir.ts";
import { loraAdapterFileBytes, saveLoraAdapter } from "../../../runtime/models/peft.ts";
import { TINY_BYTE_LLAMA, TINY_LLAMA } from "../../helpers/tiny_models.ts";

const BASE = new URL("../../../models/base/", import.meta.url);
const baseBytes = async () => ({
  "config.json": await Deno.readFile(new URL("config.json", BASE)),
  "model.safetensors": await Deno.readFile(new URL("model.safetensors", BASE)),
});

Deno.test("model bytes: the shipped base from memory, File objects and HTTP equals loadModel's", async () => {
  const disk = await loadModel(new URL(BASE).pathname);
  const files = await baseBytes();
  const fileLike = Object.entries(files).map(([name, bytes]) => ({
    name,
    webkitRelativePath: `base/${name}`,
    arrayBuffer: () => Promise.resolve(bytes.slice().buffer),
  }));
  const served = urlFiles("http://models.test/base", {
    source: "served",
    fetch: (url) => {
      const name = String(url).replace("http://models.test/base/", "");
      const bytes = files[name as keyof typeof files];
      return Promise.resolve(
        bytes ? new Response(bytes) : new Response("not found", { status: 404 }),
      );
    },
  });
  assert.equal(served.source, "served");
  for (
    const source of [memoryFiles(files, "mem"), fileListFiles(fileLike), served]
  ) {
    const m = await loadModelFiles(source);
    assert.deepEqual(m.config, disk.config);
    assert.deepEqual(m.hfConfig, disk.hfConfig);
    assert.deepEqual(m.params, disk.params);
    assert.equal(m.template, "compact");
    assert.equal(m.tokenizer.kind, "byte");
  }
  assert.equal(fileListFiles(fileLike).source, "base");
  // Files chosen one by one (no relative path) are named by their names.
  const loose = fileListFiles(fileLike.map((f) => ({ ...f, webkitRelativePath: "" })));
  assert.deepEqual(await loose.read("config.json"), files["config.json"]);
  assert.equal(await loose.read("tokenizer.json"), undefined);
});

Deno.test("model bytes: HTTP errors other than 404 and missing weights are reported", async () => {
  const broken = urlFiles("http://models.test/x/", {
    fetch: () => Promise.resolve(new Response("no", { status: 500, statusText: "Server Error" })),
  });
  await assert.rejects(loadModelFiles(broken), /HTTP 500 Server Error/);
  const noWeights = memoryFiles({ "config.json": (await baseBytes())["config.json"] }, "dir");
  await assert.rejects(
    loadModelFiles(noWeights),
    /dir: no model\.safetensors or model\.safetensors\.index\.json/,
  );
  await assert.rejects(
    loadModelFiles(memoryFiles({}, "empty")),
    /empty\/config\.json: cannot read/,
  );
});

Deno.test("model bytes: modelFileBytes and loraAdapterFileBytes are what saveModel and saveLoraAdapter write", async () => {
  const dir = await Deno.makeTempDir();
  const params = initParams(TINY_LLAMA, 3);
  const extra = { dsl_tokenizer: "byte", dsl_template: "compact" };
  await saveModel(dir, TINY_LLAMA, params, extra, "BF16");
  const bytes = await modelFileBytes(TINY_LLAMA, params, extra, "BF16");
  assert.deepEqual(Object.keys(bytes).sort(), ["config.json", "model.safetensors"]);
  for (const [name, b] of Object.entries(bytes)) {
    assert.deepEqual(await Deno.readFile(join(dir, name)), b, name);
  }
  // The bytes load back as a folder.
  const back = await loadModelFiles(memoryFiles(bytes));
  assert.deepEqual(back.config, TINY_LLAMA);
  assert.equal(back.template, "compact");

  const a: Record<string, HostArray> = {}, b: Record<string, HostArray> = {};
  const name = "model.layers.0.self_attn.q_proj.weight";
  a[name] = { shape: [2, 16], dtype: "f32", data: Float32Array.from({ length: 32 }, (_, i) => i) };
  b[name] = { shape: [16, 2], dtype: "f32", data: Float32Array.from({ length: 32 }, (_, i) => -i) };
  const factors = { a, b, rank: 2, alpha: 4 };
  await saveLoraAdapter(join(dir, "adapter"), factors, { baseModel: "tiny" });
  const adapter = await loraAdapterFileBytes(factors, { baseModel: "tiny" });
  for (const [file, data] of Object.entries(adapter)) {
    assert.deepEqual(await Deno.readFile(join(dir, "adapter", file)), data, file);
  }
  const config = JSON.parse(new TextDecoder().decode(adapter["adapter_config.json"]));
  assert.equal(config.r, 2);
  assert.deepEqual(config.target_modules, ["q_proj"]);
  const tensors = (await parseSafetensors(adapter["adapter_model.safetensors"])).tensors;
  assert.deepEqual(
    Object.keys(tensors).sort(),
    [
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
      "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
    ],
  );
  await Deno.remove(dir, { recursive: true });
});

/** A two-merge BPE vocabulary with an end-of-text token. */
const TINY_BPE = {
  model: {
    type: "BPE",
    vocab: { "a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4 },
    merges: ["a b", "Ġ ab"],
  },
  added_tokens: [{ id: 5, content: "<|endoftext|>", special: true }],
};

Deno.test("model bytes: tokenizer files, with chat_template.jinja over chat_template.json over the config", async () => {
  const files: Record<string, string> = {
    "tokenizer.json": JSON.stringify(TINY_BPE),
    "tokenizer_config.json": JSON.stringify({
      eos_token: "<|endoftext|>",
      chat_template: "config:{{ messages[0].content }}",
    }),
  };
  const cfg = { ...TINY_BYTE_LLAMA, vocab: 6 };
  const render = async (f: Record<string, string>) => {
    const tok = await readModelTokenizer(memoryFiles(f, "tok"), cfg, {});
    assert.equal(tok.kind, "hf");
    assert.equal(tok.eos, 5);
    return tok.chatTemplate!.render([{ role: "user", content: "ab" }]);
  };
  assert.equal(await render(files), "config:ab");
  const json = {
    ...files,
    "chat_template.json": JSON.stringify({ chat_template: "json:{{ 1 }}" }),
  };
  assert.equal(await render(json), "json:1");
  assert.equal(await render({ ...json, "chat_template.jinja": "jinja!" }), "jinja!");
  await assert.rejects(
    readModelTokenizer(memoryFiles({ "tokenizer_config.json": "[]" }, "none"), cfg, {}),
    /none: no tokenizer\.json/,
  );
  // The files a fine-tuned folder keeps, read from a folder on disk.
  const dir = await Deno.makeTempDir();
  for (const [n, t] of Object.entries(json)) await Deno.writeTextFile(join(dir, n), t);
  const kept = await tokenizerFileBytes(folderFiles(dir));
  assert.deepEqual(Object.keys(kept), [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.json",
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("zip: round trip, CRC-32, corruption and truncation are caught", async () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  const files = {
    "m/config.json": new TextEncoder().encode('{"a": 1}\n'),
    "m/model.safetensors": Uint8Array.from({ length: 100_003 }, (_, i) => (i * 31) & 255),
    "m/ünïcode.txt": new Uint8Array(0),
  };
  const zip = zipFiles(files, new Date(2024, 5, 1, 12, 30, 10));
  assert.deepEqual(await unzipFiles(zip), files);
  const bad = zip.slice();
  bad[45] ^= 1; // inside the first entry's data (its header and name take 43 bytes)
  await assert.rejects(unzipFiles(bad, "bad.zip"), /zip \(bad\.zip\): m\/config\.json: CRC-32/);
  await assert.rejects(unzipFiles(zip.subarray(0, 1000)), /end-of-central-directory/);
});

const has = async (cmd: string, args: string[]) => {
  try {
    return (await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
};
const python = await has("python3", ["-c", "import zipfile"]);

Deno.test({
  name: "zip: Python's zipfile reads our archive, and we read its deflated one",
  ignore: !python,
  async fn() {
    const dir = await Deno.makeTempDir();
    const files = {
      "f/a.txt": new TextEncoder().encode("hello ".repeat(1000)),
      "f/b.bin": Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) & 255),
    };
    await Deno.writeFile(join(dir, "ours.zip"), zipFiles(files));
    const script = `
import zipfile, sys, json
z = zipfile.ZipFile(sys.argv[1] + "/ours.zip")
assert z.testzip() is None
print(json.dumps({n: len(z.read(n)) for n in z.namelist()}))
with zipfile.ZipFile(sys.argv[1] + "/theirs.zip", "w", zipfile.ZIP_DEFLATED) as w:
    w.writestr("x/a.txt", "hello " * 1000)
    w.writestr("x/dir/", "")
    w.writestr("x/b.bin", bytes((i * 7) & 255 for i in range(5000)))
`;
    const res = await new Deno.Command("python3", { args: ["-c", script, dir] }).output();
    assert.ok(res.success, new TextDecoder().decode(res.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(res.stdout)), {
      "f/a.txt": 6000,
      "f/b.bin": 5000,
    });
    const theirs = await unzipFiles(await Deno.readFile(join(dir, "theirs.zip")));
    assert.deepEqual(theirs, { "x/a.txt": files["f/a.txt"], "x/b.bin": files["f/b.bin"] });
    await Deno.remove(dir, { recursive: true });
  },
});
