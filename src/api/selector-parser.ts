/**
 * The label selector string grammar of apimachinery's `labels.Parse` (pkg/labels/selector.go):
 *
 *   selector    ::= requirement | requirement "," selector
 *   requirement ::= ["!"] KEY [ ("in" | "notin") "(" VALUES ")" | ("=" | "==" | "!=" | ">" | "<") VALUE ]
 *
 * A lexer turns the string into tokens (identifiers are runs of anything but whitespace and
 * `=!(),<>`), a parser with one token of lookahead builds the requirements, and every rule
 * upstream enforces is enforced here with upstream's message, because clients (kubectl,
 * client-go's error handling, users' scripts) read those messages. Semantics kept on purpose:
 * `k in ()` is `k in ("")` and `k notin ()` is `k notin ("")` (upstream's own documented
 * example is `x in (foo,,baz),y,z notin ()`), `k=` means the empty value. Iterative, linear.
 */
import { formatFieldError, invalid } from './field.js';
import type { FieldError } from './field.js';
import type { Requirement } from './labels.js';
import { isQualifiedName, isValidLabelValue } from './names.js';

type Tok =
  | 'error'
  | 'eos'
  | ')'
  | ','
  | '!'
  | '=='
  | '='
  | '>'
  | 'ident'
  | 'in'
  | '<'
  | '!='
  | 'notin'
  | '(';

interface Item {
  tok: Tok;
  lit: string;
}

const KEYWORDS: ReadonlyMap<string, Tok> = new Map<string, Tok>([
  [')', ')'],
  [',', ','],
  ['!', '!'],
  ['==', '=='],
  ['=', '='],
  ['>', '>'],
  ['in', 'in'],
  ['<', '<'],
  ['!=', '!='],
  ['notin', 'notin'],
  ['(', '('],
]);

const isWhitespace = (c: string): boolean => c === ' ' || c === '\t' || c === '\r' || c === '\n';
const isSpecial = (c: string): boolean => c === '=' || c === '!' || c === '(' || c === ')' || c === ',' || c === '>' || c === '<';

/** The tokens of `s`, ending with `eos`. A NUL ends the input, as upstream's byte reader does. */
function lex(s: string): Item[] {
  const end = s.indexOf('\0') >= 0 ? s.indexOf('\0') : s.length;
  const out: Item[] = [];
  let i = 0;
  for (;;) {
    while (i < end && isWhitespace(s[i])) i++;
    if (i >= end) {
      out.push({ tok: 'eos', lit: '' });
      return out;
    }
    if (isSpecial(s[i])) {
      // longest run of special characters that is still a token
      let buf = '';
      let last: Item | undefined;
      while (i < end && isSpecial(s[i])) {
        buf += s[i];
        const t = KEYWORDS.get(buf);
        if (t) last = { tok: t, lit: buf };
        else if (last) break;
        i++;
      }
      out.push(last ?? { tok: 'error', lit: `error expected: keyword found '${buf}'` });
      continue;
    }
    const start = i;
    while (i < end && !isSpecial(s[i]) && !isWhitespace(s[i])) i++;
    const word = s.slice(start, i);
    out.push({ tok: KEYWORDS.get(word) ?? 'ident', lit: word });
  }
}

/** A parse failure carrying upstream's message. */
class SelectorSyntaxError extends Error {}

const fail = (msg: string): never => {
  throw new SelectorSyntaxError(msg);
};

/** Upstream's field.ErrorList.ToAggregate().Error(): duplicates dropped, one message bare, several in brackets. */
function aggregate(errs: FieldError[]): string | undefined {
  const msgs = [...new Set(errs.map(formatFieldError))];
  if (msgs.length === 0) return undefined;
  return msgs.length === 1 ? msgs[0] : `[${msgs.join(', ')}]`;
}

/** `validateLabelKey` with the parser's nil path, which Go renders as `<nil>`. */
function checkKey(key: string): void {
  const msgs = isQualifiedName(key);
  if (msgs.length) fail(formatFieldError(invalid('<nil>', key, msgs.join('; '))));
}

type Op = 'exists' | '!exists' | 'in' | 'notin' | '=' | '==' | '!=' | '>' | '<';

/** `NewRequirement`'s checks on the values, then the requirement in kubeloop's form. */
function requirement(key: string, op: Op, values: string[]): Requirement {
  const errs: FieldError[] = [];
  if (op === '>' || op === '<') {
    if (values.length !== 1) errs.push(invalid('values', values, "for 'Gt', 'Lt' operators, exactly one value is required"));
    values.forEach((v, i) => {
      if (!/^[+-]?[0-9]+$/.test(v) || !inInt64(v)) errs.push(invalid(`values[${i}]`, v, "for 'Gt', 'Lt' operators, the value must be an integer"));
    });
  }
  values.forEach((v, i) => {
    const msgs = isValidLabelValue(v);
    if (msgs.length) errs.push(invalid(`values[${i}][${key}]`, v, msgs.join('; ')));
  });
  const msg = aggregate(errs);
  if (msg) fail(msg);
  switch (op) {
    case 'exists':
    case '!exists':
      return { key, op };
    case 'in':
    case '=':
    case '==':
      return { key, op: 'in', values };
    case 'notin':
    case '!=':
      return { key, op: 'notin', values };
    case '>':
      return { key, op: 'gt', values: [values[0]] };
    case '<':
      return { key, op: 'lt', values: [values[0]] };
  }
}

function inInt64(v: string): boolean {
  const n = BigInt(v);
  return n >= -(2n ** 63n) && n <= 2n ** 63n - 1n;
}

/** sets.String.List(): unique, sorted by byte order. */
const sortedSet = (s: Set<string>): string[] => [...s].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

class Parser {
  readonly #items: Item[];
  #pos = 0;

  constructor(items: Item[]) {
    this.#items = items;
  }

  /** The current token; in a values context `in`/`notin` are plain identifiers. */
  #peek(values: boolean): Item {
    const it = this.#items[this.#pos];
    return values && (it.tok === 'in' || it.tok === 'notin') ? { tok: 'ident', lit: it.lit } : it;
  }

  #next(values: boolean): Item {
    const it = this.#peek(values);
    if (this.#pos < this.#items.length - 1) this.#pos++;
    return it;
  }

  parse(): Requirement[] {
    const out: Requirement[] = [];
    for (;;) {
      const { tok, lit } = this.#peek(true);
      if (tok === 'eos') return out;
      if (tok !== 'ident' && tok !== '!') fail(`found '${lit}', expected: !, identifier, or 'end of string'`);
      try {
        out.push(this.#requirement());
      } catch (e) {
        if (e instanceof SelectorSyntaxError) fail(`unable to parse requirement: ${e.message}`);
        throw e;
      }
      const sep = this.#next(true);
      if (sep.tok === 'eos') return out;
      if (sep.tok !== ',') fail(`found '${sep.lit}', expected: ',' or 'end of string'`);
      const after = this.#peek(true);
      if (after.tok !== 'ident' && after.tok !== '!') fail(`found '${after.lit}', expected: identifier after ','`);
    }
  }

  #requirement(): Requirement {
    let t = this.#next(true);
    let negated = false;
    if (t.tok === '!') {
      negated = true;
      t = this.#next(true);
    }
    if (t.tok !== 'ident') fail(`found '${t.lit}', expected: identifier`);
    const key = t.lit;
    checkKey(key);
    const ahead = this.#peek(true).tok;
    if (negated) return requirement(key, '!exists', []);
    if (ahead === 'eos' || ahead === ',') return requirement(key, 'exists', []);
    const op = this.#operator();
    const values = op === 'in' || op === 'notin' ? this.#valueSet() : this.#exactValue();
    return requirement(key, op, values);
  }

  #operator(): Op {
    const { tok, lit } = this.#next(false);
    switch (tok) {
      case 'in':
      case 'notin':
      case '=':
      case '==':
      case '!=':
      case '>':
      case '<':
        return tok;
      default:
        return fail(`found '${lit}', expected: in, notin, =, ==, !=, gt, lt`);
    }
  }

  /** `(a,b,,c)`; `()` and empty members stand for the empty value. */
  #valueSet(): string[] {
    const open = this.#next(true);
    if (open.tok !== '(') fail(`found '${open.lit}' expected: '('`);
    const first = this.#peek(true);
    if (first.tok === ')') {
      this.#next(true);
      return [''];
    }
    if (first.tok !== 'ident' && first.tok !== ',') fail(`found '${first.lit}', expected: ',', ')' or identifier`);
    const set = new Set<string>();
    for (;;) {
      const t = this.#next(true);
      if (t.tok === 'ident') {
        set.add(t.lit);
        const n = this.#peek(true);
        if (n.tok === ',') continue;
        if (n.tok === ')') break;
        fail(`found '${n.lit}', expected: ',' or ')'`);
      } else if (t.tok === ',') {
        if (set.size === 0) set.add('');
        const n = this.#peek(true);
        if (n.tok === ')') {
          set.add('');
          break;
        }
        if (n.tok === ',') set.add('');
      } else {
        fail(`found '${t.lit}', expected: ',', or identifier`);
      }
    }
    const close = this.#next(true);
    // upstream names the token that opened the list here, not the one found
    if (close.tok !== ')') fail(`found '${first.lit}', expected: ')'`);
    return sortedSet(set);
  }

  #exactValue(): string[] {
    const ahead = this.#peek(true);
    if (ahead.tok === 'eos' || ahead.tok === ',') return [''];
    const t = this.#next(true);
    if (t.tok === 'ident') return [t.lit];
    return fail(`found '${t.lit}', expected: identifier`);
  }
}

/** The requirements of `s` in input order, or upstream's error message. */
export function parseSelectorString(s: string): Requirement[] | string {
  try {
    return new Parser(lex(s)).parse();
  } catch (e) {
    if (e instanceof SelectorSyntaxError) return e.message;
    throw e;
  }
}
