import { randomInt } from 'node:crypto';

/**
 * Upstream's alphabet for generated names (`k8s.io/apimachinery/pkg/util/rand`): no vowels (no
 * words), no 0/1/3 (look like letters or vowels).
 */
export const SAFE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/** `generateName` semantics: a prefix cut to 58 characters plus 5 random safe characters. */
export function generateName(prefix: string): string {
  let out = prefix.length > 58 ? prefix.slice(0, 58) : prefix;
  for (let i = 0; i < 5; i++) out += SAFE_ALPHABET[randomInt(SAFE_ALPHABET.length)];
  return out;
}

/** Maps every byte of `s` into the safe alphabet (upstream `rand.SafeEncodeString`). */
export function safeEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) out += SAFE_ALPHABET[b % SAFE_ALPHABET.length];
  return out;
}

/** 32-bit FNV-1a of a string's UTF-8 bytes. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * JSON with sorted keys, dropping `undefined`/`null`, empty objects and empty arrays, so that two
 * templates that mean the same thing (a field absent vs. empty) serialise the same.
 */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(normalise(v)) ?? '';
}

function normalise(v: unknown): unknown {
  if (v === null || v === undefined) return undefined;
  if (Array.isArray(v)) {
    const out = v.map((x) => normalise(x) ?? null);
    return out.length ? out : undefined;
  }
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) {
      const x = normalise((v as Record<string, unknown>)[k]);
      if (x !== undefined) out[k] = x;
    }
    return Object.keys(out).length ? out : undefined;
  }
  return v;
}
