// Decodes a RecordBlock (records.proto) and draws image records as a grid on a canvas.

function bytesOf(base64) {
  const s = atob(base64 || "");
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// The records of `block` as arrays of numbers. BITPACKED is numpy.packbits(axis=1): each row
// padded to whole bytes, most significant bit first.
export function decodeRecords(block) {
  const n = Number(block.numRecords || 0);
  const dim = Number(block.dim || 0);
  const bytes = bytesOf(block.data);
  const view = new DataView(bytes.buffer);
  const rows = [];
  for (let r = 0; r < n; r++) {
    const row = new Float32Array(dim);
    for (let d = 0; d < dim; d++) {
      switch (block.encoding) {
        case "ENCODING_BITPACKED": {
          const rowBytes = Math.ceil(dim / 8);
          row[d] = (bytes[r * rowBytes + (d >> 3)] >> (7 - (d & 7))) & 1;
          break;
        }
        case "ENCODING_UINT8":
          row[d] = bytes[r * dim + d];
          break;
        case "ENCODING_UINT16_LE":
          row[d] = view.getUint16(2 * (r * dim + d), true);
          break;
        case "ENCODING_FLOAT32_LE":
          row[d] = view.getFloat32(4 * (r * dim + d), true);
          break;
        default:
          throw new Error(`unknown encoding ${block.encoding}`);
      }
    }
    rows.push(row);
  }
  return rows;
}

// Draws `rows` (values in [0, maxValue]) as height x width x channels images, `columns` per
// line with one-pixel gaps; the canvas is scaled up by CSS with crisp pixels.
export function drawGrid(canvas, rows, shape, maxValue, columns = 8) {
  const h = shape.height;
  const w = shape.width;
  const c = Math.max(1, shape.channels || 1);
  const cols = Math.min(columns, rows.length);
  const lines = Math.ceil(rows.length / cols);
  canvas.width = cols * (w + 1) + 1;
  canvas.height = lines * (h + 1) + 1;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(canvas.width, canvas.height);
  image.data.fill(128);
  const level = (v) => Math.max(0, Math.min(255, Math.round((255 * v) / maxValue)));
  rows.forEach((row, i) => {
    const x0 = 1 + (i % cols) * (w + 1);
    const y0 = 1 + Math.floor(i / cols) * (h + 1);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const at = 4 * ((y0 + y) * canvas.width + x0 + x);
        const base = (y * w + x) * c;  // height x width x channels
        for (let k = 0; k < 3; k++) image.data[at + k] = level(row[base + (c >= 3 ? k : 0)]);
        image.data[at + 3] = 255;
      }
    }
  });
  ctx.putImageData(image, 0, 0);
  const scale = Math.max(2, Math.floor(480 / canvas.width));
  canvas.style.width = `${canvas.width * scale}px`;
  canvas.style.height = `${canvas.height * scale}px`;
  canvas.dataset.samples = String(rows.length);
}
