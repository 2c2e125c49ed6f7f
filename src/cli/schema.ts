/**
 * The pieces the config files are declared with (zod): a node's (cli/config.ts) and a relay's
 * (relay/config.ts). Each field's schema carries its own sentence for a wrong value ("must be …;
 * got …. Example: …."), and `issuesToErrors` turns zod's issues into one line per problem naming
 * the field (`config field "replication.peer": …`), unknown fields with a "did you mean".
 */
import { z } from 'zod';

/** One sentence: the text, a full stop, and an example when given. */
export function sentence(text: string, example?: string): string {
  const end = /[.?!]$/.test(text) ? '' : '.';
  return `${text}${end}${example === undefined ? '' : ` Example: ${example}.`}`;
}

/** A short description of a value for "got …". */
export function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length === 0 ? 'an empty array' : 'an array';
  switch (typeof v) {
    case 'string': {
      const j = JSON.stringify(v);
      return j.length > 48 ? `${j.slice(0, 44)}…" (${v.length} characters)` : j;
    }
    case 'number':
    case 'boolean':
      return String(v);
    case 'object':
      return 'an object';
    default:
      return `a ${typeof v}`;
  }
}

/** zod's message for a value that breaks `rule`: "missing" when absent, else the rule and what came. */
export const wrong =
  (rule: string, example?: string) =>
  (iss: { input?: unknown }): string =>
    iss.input === undefined
      ? sentence('missing; it is required', example)
      : sentence(`${rule}; got ${show(iss.input)}`, example);

export const text = (example: string) => z.string({ error: wrong('must be a string', example) });

/**
 * A string `problem` finds nothing wrong with (it returns the rule broken). `secret`: the value
 * is never shown (a key).
 */
export const checked = (example: string, problem: (s: string) => string | undefined, secret = false) =>
  text(example).superRefine((s, ctx) => {
    const p = problem(s);
    if (p !== undefined)
      ctx.addIssue({
        code: 'custom',
        message: secret ? sentence(p, example) : sentence(`${p}; got ${show(s)}`, example),
      });
  });

export const int = (
  lo: number,
  hi: number,
  example: string,
  rule = `must be an integer from ${lo} to ${hi}`,
) => {
  const e = wrong(rule, example);
  return z.number({ error: e }).int({ error: e }).min(lo, { error: e }).max(hi, { error: e });
};

export const bool = (rule: string, example?: string) => z.boolean({ error: wrong(rule, example) });

/** One of `options`, with a "did you mean" for a near miss. */
export const oneOf = <const T extends readonly [string, ...string[]]>(options: T) => {
  const list = options.map((x) => `"${x}"`).join(' or ');
  return z.enum(options, {
    error: (iss) => {
      if (iss.input === undefined) return sentence('missing; it is required', list);
      const near = typeof iss.input === 'string' ? suggest(iss.input, options) : undefined;
      return sentence(
        `must be ${list}; got ${show(iss.input)}${near === undefined ? '' : `; did you mean "${near}"?`}`,
      );
    },
  });
};

/** An object with exactly these fields (unknown ones are errors). */
export const obj = <S extends z.ZodRawShape>(shape: S, example: string) =>
  z.strictObject(shape, { error: wrong('must be an object', example) });

/** "frontends[0].bind[1]" from zod's path. */
export function fieldOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out;
}

type Def = {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  options?: z.ZodType[];
};
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The field names of the object schema at `path` inside `schema` (wrappers looked through). */
function fieldsAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let s: z.ZodType | undefined = schema;
  const unwrap = () => {
    for (let i = 0; i < 16 && s; i++) {
      const d = defOf(s);
      const next =
        d.innerType ?? d.in ?? (d.type === 'union' ? d.options?.find((o) => defOf(o).shape) : undefined);
      if (!next || d.shape) return;
      s = next;
    }
  };
  for (const p of path) {
    unwrap();
    if (!s) return [];
    const d = defOf(s);
    s =
      typeof p === 'number'
        ? d.element
        : d.shape && Object.hasOwn(d.shape, p)
          ? d.shape[String(p)]
          : undefined;
  }
  unwrap();
  return s ? Object.keys(defOf(s).shape ?? {}) : [];
}

/** Every problem zod found, one sentence each naming the field (a missing value, an unknown field…). */
export function issuesToErrors(
  schema: z.ZodType,
  issues: readonly z.core.$ZodIssue[],
  prefix = '',
): string[] {
  const out: string[] = [];
  const at = (f: string) => (prefix && f ? `${prefix}.${f}` : prefix || f);
  for (const i of issues) {
    const f = fieldOf(i.path);
    if (i.code === 'unrecognized_keys') {
      const known = fieldsAt(schema, i.path);
      for (const k of i.keys) {
        const near = suggest(k, known);
        out.push(
          `config field "${at(f ? `${f}.${k}` : k)}": unknown field; ${
            near === undefined
              ? `the fields here are ${known.map((x) => `"${x}"`).join(', ')}.`
              : `did you mean "${near}"?`
          }`,
        );
      }
      continue;
    }
    let msg = i.message;
    // A schema without a sentence of its own (zod's default words): say it our way.
    if (i.code === 'invalid_type' && !/^(must|missing)/.test(msg))
      msg =
        i.input === undefined
          ? 'missing; it is required.'
          : `must be ${i.expected === 'array' ? 'a list' : `a${/^[aeiou]/.test(i.expected) ? 'n' : ''} ${i.expected}`}; got ${show(i.input)}.`;
    out.push(`config field "${at(f)}": ${/[.?!]$/.test(msg) ? msg : `${msg}.`}`);
  }
  return out;
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    d.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        d[i].push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2][j - 2] + 1);
      d[i].push(best);
    }
  }
  return d[a.length][b.length];
}

/** The known name closest to `name`, when it is close enough to be a typo. */
export function suggest(name: string, known: readonly string[]): string | undefined {
  if (name.length > 64) return undefined;
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(lower, k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  const limit = Math.max(1, Math.floor(Math.max(name.length, 3) / 3));
  return bestD <= limit ? best : undefined;
}
