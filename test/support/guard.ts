/**
 * A plain Uint8Array answers `undefined` for an index past its end, so a parser that reads too
 * far goes unnoticed. `guard` wraps an input so that such a read throws.
 */

/** Reads of an index outside the array throw; `subarray` results are guarded too. */
export function guard(target: Uint8Array): Uint8Array {
  return new Proxy(target, {
    get(t, prop) {
      if (typeof prop === 'string') {
        const c = prop.charCodeAt(0);
        if ((c >= 48 && c <= 57) || c === 45) {
          const i = Number(prop);
          if (Number.isInteger(i) && (i < 0 || i >= t.length))
            throw new OutOfRange(`read of index ${i} of a ${t.length}-byte input`);
        }
        if (prop === 'subarray') return (s?: number, e?: number) => guard(t.subarray(s, e));
      }
      const v = Reflect.get(t, prop);
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}

export class OutOfRange extends Error {}
