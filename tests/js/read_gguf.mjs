// An independent GGUF reader for tests/io/test_gguf.cpp: parses a file with the npm package @huggingface/gguf
// (installed under PREFIX by the test: `npm install --prefix PREFIX @huggingface/gguf@0.4.6`) and prints JSON:
//
//   { "version": 3, "tensor_data_offset": "<n>",
//     "metadata": [ { "key": k, "type": <GGUF value type>, "sub_type": <array element type>, "value": v }, ... ],
//     "tensors": [ { "name": n, "shape": ["<ne0>", ...], "dtype": <ggml type>, "offset": "<n>",
//                    "f32": [values] (F32 tensors only, read here from the file with node's fs) }, ... ] }
//
// in file order. 64-bit integers (bigint) are printed as decimal strings; floats as JSON numbers (float32 values
// widened to double exactly, so the shortest double repr round-trips them).
//
// Usage: node read_gguf.mjs PREFIX FILE.gguf
import { createRequire } from "node:module";
import { openSync, readSync, closeSync } from "node:fs";
import { join, resolve } from "node:path";

const [prefix, file] = process.argv.slice(2);
if (!prefix || !file) {
  console.error("usage: node read_gguf.mjs PREFIX FILE.gguf");
  process.exit(2);
}

const require = createRequire(join(resolve(prefix), "package.json"));
const { gguf } = require("@huggingface/gguf");

const parsed = await gguf(resolve(file), { allowLocalFile: true, typedMetadata: true });

const header = new Set(["version", "tensor_count", "kv_count"]);  // the library adds these to the metadata
const metadata = [];
for (const [key, entry] of Object.entries(parsed.typedMetadata)) {
  if (header.has(key)) continue;
  metadata.push({ key, type: entry.type, sub_type: entry.subType ?? null, value: entry.value });
}

const F32 = 0;
const fd = openSync(resolve(file), "r");
const tensors = parsed.tensorInfos.map((info) => {
  const tensor = { name: info.name, shape: info.shape, dtype: info.dtype, offset: info.offset };
  if (info.dtype === F32) {
    const count = info.shape.reduce((n, extent) => n * Number(extent), 1);
    const bytes = Buffer.alloc(count * 4);
    const got = readSync(fd, bytes, 0, bytes.length, Number(parsed.tensorDataOffset + info.offset));
    if (got !== bytes.length) throw new Error(`tensor ${info.name}: read ${got} of ${bytes.length} bytes`);
    tensor.f32 = Array.from({ length: count }, (_, i) => bytes.readFloatLE(4 * i));
  }
  return tensor;
});
closeSync(fd);

const out = {
  version: parsed.metadata.version,
  tensor_data_offset: parsed.tensorDataOffset,
  metadata,
  tensors,
};
process.stdout.write(JSON.stringify(out, (_, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
