/**
 * ZIP archives of a few files (a model or adapter folder for a browser download, and back):
 * written with every entry stored uncompressed (weights barely compress), read when stored or
 * deflated (DecompressionStream "deflate-raw", in Deno and every current browser). No ZIP64: each
 * file and the whole archive stay under 4 GiB. Names are UTF-8, CRC-32 is checked on read.
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE, as ZIP and gzip use) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const LIMIT = 0xffffffff;

/** MS-DOS time and date fields of `d` (local time, 2-second resolution, years 1980–2107). */
function dosDateTime(d: Date): [number, number] {
  const year = Math.min(2107, Math.max(1980, d.getFullYear()));
  const time = (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1);
  const date = ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate();
  return [time, date];
}

/**
 * A ZIP archive holding `files` (name → bytes; "/" in a name makes folders), stored
 * uncompressed, in the given order.
 */
export function zipFiles(
  files: Record<string, Uint8Array>,
  date: Date = new Date(),
): Uint8Array {
  const enc = new TextEncoder();
  const [time, day] = dosDateTime(date);
  const entries = Object.entries(files).map(([name, data]) => ({
    name: enc.encode(name),
    data,
    crc: crc32(data),
    offset: 0,
  }));
  let size = 22;
  for (const e of entries) {
    if (e.data.length >= LIMIT) throw new Error(`zip: ${e.name} is 4 GiB or more (no ZIP64)`);
    size += 30 + e.name.length + e.data.length + 46 + e.name.length;
  }
  if (size >= LIMIT) throw new Error("zip: the archive would be 4 GiB or more (no ZIP64)");
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let at = 0;
  const header = (sig: number, central: boolean, e: (typeof entries)[number]) => {
    v.setUint32(at, sig, true);
    at += 4;
    if (central) v.setUint16((at += 2) - 2, 20, true); // made by: version 2.0
    v.setUint16(at, 20, true); // version needed: 2.0
    v.setUint16(at + 2, 0x0800, true); // UTF-8 names
    v.setUint16(at + 4, 0, true); // stored
    v.setUint16(at + 6, time, true);
    v.setUint16(at + 8, day, true);
    v.setUint32(at + 10, e.crc, true);
    v.setUint32(at + 14, e.data.length, true);
    v.setUint32(at + 18, e.data.length, true);
    v.setUint16(at + 22, e.name.length, true);
    v.setUint16(at + 24, 0, true); // extra field length
    at += 26;
    if (central) {
      // comment length, disk number, internal and external attributes (all 0), local offset
      at += 10;
      v.setUint32(at, e.offset, true);
      at += 4;
    }
    out.set(e.name, at);
    at += e.name.length;
  };
  for (const e of entries) {
    e.offset = at;
    header(0x04034b50, false, e);
    out.set(e.data, at);
    at += e.data.length;
  }
  const centralStart = at;
  for (const e of entries) header(0x02014b50, true, e);
  v.setUint32(at, 0x06054b50, true);
  v.setUint16(at + 8, entries.length, true);
  v.setUint16(at + 10, entries.length, true);
  v.setUint32(at + 12, at - centralStart, true);
  v.setUint32(at + 16, centralStart, true);
  return out;
}

async function inflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * The files of a ZIP archive (name → bytes; folder entries are skipped), entries stored or
 * deflated. Throws on anything else, a CRC mismatch or a truncated archive; `source` names it.
 */
export async function unzipFiles(
  zip: Uint8Array,
  source = "<zip>",
): Promise<Record<string, Uint8Array>> {
  const fail = (msg: string): never => {
    throw new Error(`zip (${source}): ${msg}`);
  };
  const v = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let end = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (v.getUint32(i, true) === 0x06054b50) {
      end = i;
      break;
    }
  }
  if (end < 0) fail("no end-of-central-directory record (not a ZIP archive, or truncated)");
  const count = v.getUint16(end + 10, true);
  let at = v.getUint32(end + 16, true);
  const dec = new TextDecoder();
  const out: Record<string, Uint8Array> = {};
  for (let i = 0; i < count; i++) {
    if (at + 46 > zip.length || v.getUint32(at, true) !== 0x02014b50) {
      fail(`central directory entry ${i} is corrupt`);
    }
    const method = v.getUint16(at + 10, true);
    const crc = v.getUint32(at + 16, true);
    const packed = v.getUint32(at + 20, true);
    const size = v.getUint32(at + 24, true);
    const nameLen = v.getUint16(at + 28, true);
    const extraLen = v.getUint16(at + 30, true);
    const commentLen = v.getUint16(at + 32, true);
    const local = v.getUint32(at + 42, true);
    const name = dec.decode(zip.subarray(at + 46, at + 46 + nameLen));
    at += 46 + nameLen + extraLen + commentLen;
    if (packed === LIMIT || size === LIMIT) fail(`${name}: ZIP64 entries are not supported`);
    if (name.endsWith("/")) continue;
    if (local + 30 > zip.length || v.getUint32(local, true) !== 0x04034b50) {
      fail(`${name}: local header is corrupt`);
    }
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    if (start + packed > zip.length) fail(`${name}: data runs past the end (truncated?)`);
    const raw = zip.subarray(start, start + packed);
    let data: Uint8Array;
    if (method === 0) data = raw;
    else if (method === 8) data = await inflateRaw(raw);
    else data = fail(`${name}: compression method ${method} is not supported (stored, deflate)`);
    if (data.length !== size) fail(`${name}: ${data.length} bytes, the directory says ${size}`);
    if (crc32(data) !== crc) fail(`${name}: CRC-32 mismatch (corrupt archive)`);
    out[name] = data;
  }
  return out;
}
