// Independent JCS oracle: JavaScript itself.
//   node jcs_oracle.mjs numbers IN OUT   — IN: one IEEE-754 bit pattern (16 hex digits) per line;
//                                          OUT: String(x) per line.
//   node jcs_oracle.mjs documents IN OUT — IN: one JSON text per line; OUT: its RFC 8785 form,
//                                          i.e. JSON.stringify with keys sorted by UTF-16 units
//                                          (Array.prototype.sort's default order).
import { readFileSync, writeFileSync } from "node:fs";

const [mode, input, output] = process.argv.slice(2);
const lines = readFileSync(input, "utf8").split("\n").filter((l) => l.length > 0);

function canonical(v) {
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  if (v !== null && typeof v === "object") {
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
  }
  return JSON.stringify(v);
}

let out;
if (mode === "numbers") {
  const view = new DataView(new ArrayBuffer(8));
  out = lines.map((hex) => {
    view.setBigUint64(0, BigInt("0x" + hex));
    return String(view.getFloat64(0));
  });
} else if (mode === "documents") {
  out = lines.map((text) => canonical(JSON.parse(text)));
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
writeFileSync(output, out.join("\n") + "\n");
