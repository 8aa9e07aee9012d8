import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { Container } from '../../api/types.js';

/** Where the built-in image programs live (`src/images/<name>.mjs`). */
export const BUILTIN_DIR = fileURLToPath(new URL('../../images/', import.meta.url));

/** The image table shipped with kubeloop. */
export const DEFAULT_IMAGE_TABLE = fileURLToPath(new URL('../../../config/images/images.yaml', import.meta.url));

/** What an image runs; see config/images/images.yaml for the semantics. */
export interface ImageEntry {
  /** canonical name (the key in the table) */
  name: string;
  /** ENTRYPOINT (or, in `cmd` mode, the default command) as argv; a builtin is `[node, file]` */
  command: readonly string[];
  /** default arguments (Docker CMD) */
  args: readonly string[];
  mode: 'entrypoint' | 'cmd';
  /**
   * the image's own executables (`/agnhost`, `nginx`): a container `command` starting with one
   * of these runs this entry with the rest of the command as arguments
   */
  commands: readonly string[];
  /** the built-in program's name, when it is one */
  builtin?: string;
  /**
   * what runs instead of `command`/`args` for a container with `stdin: true` and neither
   * command nor args (`kubectl run -it`, `kubectl debug -it`): busybox's `sh`
   */
  interactive?: readonly string[];
}

export interface ImageTable {
  /** the file it was loaded from (of several: the one to add entries to), for messages */
  readonly file: string;
  /** normalised reference → entry */
  readonly entries: ReadonlyMap<string, ImageEntry>;
  /** every file the entries come from, in order (a later one overrides an earlier); default `[file]` */
  readonly files?: readonly string[];
  /** tables that could not be (re-)read, one line each naming the file, the line and what is used instead */
  readonly problems?: readonly string[];
  /** calls `listener` after the tables changed (re-read from disk); returns the unsubscribe */
  onChange?(listener: () => void): () => void;
}

/**
 * `docker.io/library/nginx:1.27@sha256:…` → `nginx`. Registries other than Docker Hub are kept
 * (`registry.k8s.io/pause:3.9` → `registry.k8s.io/pause`).
 */
export function normaliseImage(ref: string): string {
  let s = ref.trim().toLowerCase();
  const at = s.indexOf('@');
  if (at >= 0) s = s.slice(0, at);
  const slash = s.lastIndexOf('/');
  const colon = s.lastIndexOf(':');
  if (colon > slash) s = s.slice(0, colon);
  for (const p of ['docker.io/', 'index.docker.io/', 'registry-1.docker.io/']) {
    if (s.startsWith(p)) s = s.slice(p.length);
  }
  if (s.startsWith('library/')) s = s.slice('library/'.length);
  return s;
}

const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number');

/** Reads and checks an image table; every problem is reported at once, naming the file. */
// sync reads here run only at start-up (cli/daemon.ts loads the table before anything listens)
export function loadImageTable(file: string): ImageTable {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read image table ${file}: ${(e as Error).message}`);
  }
  return parseImageTableText(text, file);
}

/**
 * Parses an image table's text; problems name `file:line` (the line of the entry they concern),
 * so an edit that breaks the table points at itself.
 */
export function parseImageTableText(text: string, file: string): ImageTable {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const at = lineCounter.linePos(e.pos[0]);
    throw new Error(`image table ${file} is not valid YAML at line ${at.line}, column ${at.col}: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`);
  }
  const lineOf = (key: string): number | undefined => {
    // the line of the entry's key (`  postgres:`), where an editor would look
    const images = doc.get('images', true) as { items?: Array<{ key?: { value?: unknown; range?: [number, number, number] } }> } | undefined;
    const range = images?.items?.find((p) => String(p.key?.value) === key)?.key?.range;
    return range ? lineCounter.linePos(range[0]).line : undefined;
  };
  return parseImageTable(doc.toJS({ maxAliasCount: 100 }), file, lineOf);
}

/** Builds a table from a parsed document (`{ images: { name: entry } }`). */
export function parseImageTable(doc: unknown, file: string, lineOf: (key: string) => number | undefined = () => undefined): ImageTable {
  const problems: string[] = [];
  const entries = new Map<string, ImageEntry>();
  const images = (doc as { images?: unknown } | null)?.images;
  if (images === null || typeof images !== 'object' || Array.isArray(images)) {
    throw new Error(`image table ${file}: expected a mapping under "images:" (image name → { builtin | command, args, mode, aliases })`);
  }
  for (const [key, raw] of Object.entries(images as Record<string, unknown>)) {
    const line = lineOf(key);
    const where = `${line ? `line ${line}: ` : ''}images.${key}`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      problems.push(`${where}: expected a mapping with "builtin" or "command"`);
      continue;
    }
    const e = raw as Record<string, unknown>;
    for (const k of Object.keys(e)) {
      if (!['builtin', 'command', 'args', 'mode', 'aliases', 'commands', 'interactive'].includes(k)) {
        problems.push(`${where}.${k}: unknown field (supported: builtin, command, args, mode, aliases, commands, interactive)`);
      }
    }
    let command: string[] | undefined;
    let builtin: string | undefined;
    if (e.builtin !== undefined && e.command !== undefined) {
      problems.push(`${where}: give either "builtin" or "command", not both`);
    } else if (e.builtin !== undefined) {
      if (typeof e.builtin !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(e.builtin)) {
        problems.push(`${where}.builtin: expected the name of a program in ${BUILTIN_DIR}`);
      } else {
        const prog = path.join(BUILTIN_DIR, `${e.builtin}.mjs`);
        if (!existsSync(prog)) problems.push(`${where}.builtin: no built-in image "${e.builtin}" (${prog} does not exist)`);
        builtin = e.builtin;
        command = [process.execPath, prog];
      }
    } else if (e.command !== undefined) {
      if (!isStringArray(e.command) || e.command.length === 0) problems.push(`${where}.command: expected a non-empty list of strings`);
      else command = e.command.map(String);
    } else {
      problems.push(`${where}: needs "builtin: <name>" (a program in ${BUILTIN_DIR}) or "command: [argv...]"`);
    }
    let args: string[] = [];
    if (e.args !== undefined) {
      if (!isStringArray(e.args)) problems.push(`${where}.args: expected a list of strings`);
      else args = e.args.map(String);
    }
    const mode = e.mode ?? 'entrypoint';
    if (mode !== 'entrypoint' && mode !== 'cmd') problems.push(`${where}.mode: expected "entrypoint" or "cmd"`);
    const commands = e.commands ?? [];
    if (!isStringArray(commands)) problems.push(`${where}.commands: expected a list of executable names`);
    let interactive: string[] | undefined;
    if (e.interactive !== undefined) {
      if (!isStringArray(e.interactive) || e.interactive.length === 0) problems.push(`${where}.interactive: expected a non-empty list of strings`);
      else interactive = e.interactive.map(String);
    }
    const aliases = e.aliases ?? [];
    if (!isStringArray(aliases)) problems.push(`${where}.aliases: expected a list of image names`);
    if (!command) continue;
    const entry: ImageEntry = Object.freeze({
      name: key,
      command: Object.freeze(command),
      args: Object.freeze(args),
      mode: mode === 'cmd' ? 'cmd' : 'entrypoint',
      commands: Object.freeze(isStringArray(commands) ? commands.map(String) : []),
      ...(builtin ? { builtin } : {}),
      ...(interactive ? { interactive: Object.freeze(interactive) } : {}),
    });
    for (const n of [key, ...(isStringArray(aliases) ? aliases.map(String) : [])]) {
      const norm = normaliseImage(n);
      const other = entries.get(norm);
      if (other && other !== entry) problems.push(`${where}: "${n}" is already listed under images.${other.name}`);
      else entries.set(norm, entry);
    }
  }
  if (problems.length) throw new Error(`image table ${file} is invalid:\n  ${problems.join('\n  ')}`);
  return Object.freeze({ file, entries });
}

export type Resolved =
  | { ok: true; argv: string[]; entry?: ImageEntry }
  | { ok: false; reason: 'ErrImageNeverPull' | 'InvalidImageName'; message: string };

/**
 * The argv a container runs, with Kubernetes' override rules: `command` replaces the image's
 * ENTRYPOINT and its default args; `args` replace the default args.
 */
export function resolveContainer(table: ImageTable, c: Container): Resolved {
  const command = c.command?.length ? c.command : undefined;
  const args = c.args?.length ? c.args : undefined;
  const image = c.image?.trim();
  if (command) {
    // `command: [/agnhost, netexec]` on the agnhost image: the stand-in runs, with the rest as arguments
    const entry = image ? table.entries.get(normaliseImage(image)) : undefined;
    if (entry?.commands.includes(command[0])) {
      return { ok: true, argv: [...entry.command, ...command.slice(1), ...(args ?? [])], entry };
    }
    return { ok: true, argv: [...command, ...(args ?? [])] };
  }
  if (!image) {
    return { ok: false, reason: 'InvalidImageName', message: `container "${c.name}" has neither an image nor a command` };
  }
  const entry = table.entries.get(normaliseImage(image));
  if (!entry) {
    const files = table.files ?? [table.file];
    const read = files.length > 1 ? `the image tables ${files.join(', ')}` : `the image table ${files[0]}`;
    const reread = table.onChange ? ' (the tables are re-read when they change, and this container then starts)' : '';
    const problems = table.problems?.length ? `; ${table.problems.join('; ')}` : '';
    return {
      ok: false,
      reason: 'ErrImageNeverPull',
      message:
        `image "${image}" is not in ${read} and the container has no command: ` +
        `add "${normaliseImage(image)}" to ${table.file}${reread} or give the container a command${problems}`,
    };
  }
  if (entry.mode === 'cmd' && args?.length) return { ok: true, argv: [...args], entry };
  if (!args && c.stdin && entry.interactive) return { ok: true, argv: [...entry.interactive], entry };
  return { ok: true, argv: [...entry.command, ...(args ?? entry.args)], entry };
}
