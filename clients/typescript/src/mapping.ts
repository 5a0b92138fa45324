// Mappings: Switchyard maps input and output on the server with `$Input{path}`
// and `$Response{path}` templates. The reference's `mapInput(fn)` /
// `mapOutput(fn)` take a function; this module turns such a function into the
// template it describes by calling it once with a stand-in that records which
// paths it reads. Property reads, nesting, arrays, constants and string
// interpolation translate; arithmetic or branching on values cannot (the
// values only exist on the server at run time) and is refused, naming the path.

const PATH = Symbol('switchyard.mappingPath');

interface Ref {
  root: string;
  path: string[];
}

function text(r: Ref): string {
  return `${r.root}{${r.path.join('.')}}`;
}

function standIn(ref: Ref, used: { numeric?: Ref }): unknown {
  const target = function () {};
  return new Proxy(target, {
    get(_t, prop) {
      if (prop === PATH) return ref;
      if (prop === Symbol.toPrimitive) {
        return (hint: string) => {
          if (hint === 'number') {
            used.numeric = ref;
            return NaN;
          }
          return text(ref);
        };
      }
      if (prop === 'toJSON' || prop === 'toString') return () => text(ref);
      if (prop === 'valueOf') return () => text(ref);
      if (typeof prop === 'symbol') return undefined;
      return standIn({ root: ref.root, path: [...ref.path, prop] }, used);
    },
    apply() {
      throw new TypeError(`${text(ref)} is a value, not a function: a mapping can only read fields`);
    },
  });
}

/** A template given as a function (`(input) => ({to: input.phone})`) or as data. */
export type Mapping = ((value: any) => unknown) | Record<string, unknown> | string | unknown[];

/**
 * The template a mapping stands for. `root` is `$Input` for input mappings and
 * `$Response` for output mappings; `where` names the field in errors.
 */
export function toTemplate(mapping: Mapping, root: '$Input' | '$Response', where: string): unknown {
  if (typeof mapping !== 'function') return mapping;
  const used: { numeric?: Ref } = {};
  let produced: unknown;
  try {
    produced = mapping(standIn({ root, path: [] }, used));
  } catch (e) {
    throw new TypeError(
      `${where}: the mapping function could not be turned into a template (${(e as Error).message}). ` +
        `Switchyard maps on the server: read fields only, or give a template such as {to: '${root}{phone}'}`,
    );
  }
  if (used.numeric) {
    const from = text(used.numeric);
    throw new TypeError(
      `${where}: the mapping computes with ${from} (arithmetic or a comparison); Switchyard maps on the server with ` +
        `templates and cannot run code there. Put the computed value in the run's input and read it, or map the field as it is`,
    );
  }
  if (produced && typeof (produced as { then?: unknown }).then === 'function') {
    throw new TypeError(`${where}: a mapping function must return its result, not a promise`);
  }
  return walk(produced, where);
}

function walk(value: unknown, where: string): unknown {
  if (value === null || value === undefined) return value ?? null;
  const ref = (value as { [PATH]?: Ref })[PATH];
  if (ref) return text(ref);
  switch (typeof value) {
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${where}: ${value} is not a JSON number`);
      return value;
    case 'string':
      return value;
    case 'boolean':
      return value;
    case 'function':
      throw new TypeError(`${where}: the mapping returned a function; return data that reads fields`);
    case 'object':
      if (Array.isArray(value)) return value.map((v, i) => walk(v, `${where}[${i}]`));
      return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, walk(v, `${where}.${k}`)]));
    default:
      throw new TypeError(`${where}: a mapping cannot hold a ${typeof value}`);
  }
}
