/**
 * CRC-32 (IEEE 802.3, the zlib/PNG polynomial), table-driven. Ours because `zlib.crc32`
 * exists only from Node 20.15 and the engines field says Node 20.
 */
const TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 of `buf[start, end)`, continuing from `prev` (0 to start). */
export function crc32(buf: Uint8Array, prev = 0, start = 0, end = buf.length): number {
  let c = ~prev;
  for (let i = start; i < end; i++) c = TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
