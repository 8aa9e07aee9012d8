import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { type ImageEntry, type ImageTable, parseImageTableText } from './images.js';

/** edits arrive as bursts of inotify events (truncate, write, rename): one re-read per burst */
const DEBOUNCE_MS = 100;

export interface ImageCatalogOptions {
  /** the tables, in order: a later one's entries override an earlier one's of the same name */
  files: readonly string[];
  log: Logger;
  debounceMs?: number;
}

interface Layer {
  file: string;
  table: ImageTable | undefined;
  /** why the last read failed (the previous table, if any, stays in use); logged once per text */
  problem: string | undefined;
  timer: NodeJS.Timeout | undefined;
}

/**
 * The image tables of a node (`config/images/images.yaml` and each `--images FILE`), merged, and
 * re-read when they change: each file's directory is watched (editors replace files by
 * renaming, which a watch on the file itself would miss), a burst of events is debounced into
 * one read, and a table that no longer parses keeps its previous entries, with the problem
 * logged once and named in ErrImageNeverPull messages. Listeners (containers waiting in
 * ErrImageNeverPull) are called after each change.
 */
export class ImageCatalog implements ImageTable {
  readonly #layers: Layer[];
  readonly #log: Logger;
  readonly #debounceMs: number;
  readonly #watchers: FSWatcher[] = [];
  readonly #listeners = new Set<() => void>();
  #entries: ReadonlyMap<string, ImageEntry> = new Map();
  #closed = false;

  private constructor(o: ImageCatalogOptions) {
    this.#layers = [...new Set(o.files.map((f) => path.resolve(f)))].map((file) => ({ file, table: undefined, problem: undefined, timer: undefined }));
    this.#log = o.log.child({ component: 'images' });
    this.#debounceMs = o.debounceMs ?? DEBOUNCE_MS;
  }

  /**
   * Reads every table and starts watching them. A table that cannot be read or parsed at start
   * is an error naming every such file (the daemon does not start on a table it cannot use).
   */
  static async open(o: ImageCatalogOptions): Promise<ImageCatalog> {
    const c = new ImageCatalog(o);
    const problems: string[] = [];
    for (const l of c.#layers) {
      try {
        l.table = parseImageTableText(await readFile(l.file, 'utf8'), l.file);
      } catch (e) {
        problems.push(describe(e, l.file));
      }
    }
    if (problems.length) throw new Error(problems.join('\n'));
    c.#merge();
    c.#watch();
    return c;
  }

  get file(): string {
    return this.#layers[this.#layers.length - 1].file;
  }

  get files(): readonly string[] {
    return this.#layers.map((l) => l.file);
  }

  get entries(): ReadonlyMap<string, ImageEntry> {
    return this.#entries;
  }

  get problems(): readonly string[] {
    return this.#layers.filter((l) => l.problem).map((l) => `${l.problem} (${l.table ? 'its previous entries are used' : 'none of its entries are used'})`);
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops watching; idempotent. */
  close(): void {
    this.#closed = true;
    for (const w of this.#watchers) w.close();
    this.#watchers.length = 0;
    for (const l of this.#layers) clearTimeout(l.timer);
    this.#listeners.clear();
  }

  #watch(): void {
    const byDir = new Map<string, Layer[]>();
    for (const l of this.#layers) {
      const dir = path.dirname(l.file);
      byDir.set(dir, [...(byDir.get(dir) ?? []), l]);
    }
    for (const [dir, layers] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          // some platforms give no name: then any table of the directory may have changed
          for (const l of layers) if (!name || String(name) === path.basename(l.file)) this.#schedule(l);
        });
        w.on('error', (err) => this.#log.warn({ err, dir }, `stopped watching ${dir} for image table changes: ${err.message} (restart kubeloop to pick up edits)`));
        this.#watchers.push(w);
      } catch (e) {
        this.#log.warn({ dir }, `cannot watch ${dir} for image table changes: ${(e as Error).message} (edits take effect at the next start)`);
      }
    }
  }

  #schedule(l: Layer): void {
    if (this.#closed) return;
    clearTimeout(l.timer);
    l.timer = setTimeout(() => void this.#reload(l), this.#debounceMs);
  }

  async #reload(l: Layer): Promise<void> {
    l.timer = undefined;
    let table: ImageTable;
    try {
      table = parseImageTableText(await readFile(l.file, 'utf8'), l.file);
    } catch (e) {
      if (this.#closed) return;
      const problem = describe(e, l.file);
      // an editor's save is several events; a broken table is logged once, not per event
      if (problem === l.problem) return;
      this.#log.error({ file: l.file }, `${problem}: keeping its previous entries until it is fixed`);
      l.problem = problem;
      // waiting containers look again: their message names the broken table
      this.#notify();
      return;
    }
    if (this.#closed) return;
    if (l.problem) this.#log.info({ file: l.file }, `image table ${l.file} is valid again`);
    l.problem = undefined;
    l.table = table;
    this.#merge();
    this.#log.info({ file: l.file, images: table.entries.size }, `image table ${l.file} re-read`);
    this.#notify();
  }

  #notify(): void {
    for (const f of [...this.#listeners]) {
      try {
        f();
      } catch (err) {
        this.#log.error({ err }, 'image table listener failed');
      }
    }
  }

  #merge(): void {
    const m = new Map<string, ImageEntry>();
    for (const l of this.#layers) for (const [k, v] of l.table?.entries ?? []) m.set(k, v);
    this.#entries = m;
  }
}

function describe(e: unknown, file: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code) return `cannot read image table ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`;
  return (e as Error).message.replace(/:?\n\s*/g, (m) => (m.startsWith(':') ? ': ' : '; '));
}
