/**
 * Append-only typed arrays: compact storage for graphs with millions of entries.
 *
 * Lists grow by whole chunks of 64Ki entries and never copy what they hold: doubling a typed array of millions of
 * entries costs a copy and a fresh zeroed allocation each time, and a large step's builder spent more time there
 * than in building the step. Entries are copied once, when the list is frozen with `toArray`.
 */

type TypedArray = Float64Array | Int32Array | Int16Array | Uint8Array;
type TypedArrayConstructor<T extends TypedArray> = new (length: number) => T;

/** A copy of `array` with room for `length` entries (the new ones zero). */
export function grown<T extends TypedArray>(array: T, length: number): T {
  const bigger = new (array.constructor as TypedArrayConstructor<T>)(length);
  bigger.set(array);
  return bigger;
}

const CHUNK_BITS = 16;
const CHUNK = 1 << CHUNK_BITS;
const CHUNK_MASK = CHUNK - 1;

class ChunkedList<T extends TypedArray> {
  length = 0;
  private readonly chunks: T[] = [];
  private current: T;
  private used = 0;

  constructor(private readonly make: TypedArrayConstructor<T>) {
    this.current = new make(CHUNK);
    this.chunks.push(this.current);
  }

  /** Appends `value`; returns its index. */
  push(value: number): number {
    if (this.used === CHUNK) {
      this.current = new this.make(CHUNK);
      this.chunks.push(this.current);
      this.used = 0;
    }
    this.current[this.used++] = value;
    return this.length++;
  }

  get(index: number): number {
    return this.chunks[index >>> CHUNK_BITS][index & CHUNK_MASK];
  }

  /** The entries as one typed array (of another element type if given). */
  toArray(): T;
  toArray<U extends TypedArray>(as: TypedArrayConstructor<U>): U;
  toArray(as?: TypedArrayConstructor<TypedArray>): TypedArray {
    const out = new (as ?? this.make)(this.length);
    for (let c = 0, at = 0; at < this.length; c++, at += CHUNK) {
      const chunk = this.chunks[c];
      out.set(this.length - at >= CHUNK ? chunk : chunk.subarray(0, this.length - at), at);
    }
    return out;
  }
}

export class IntList extends ChunkedList<Int32Array> {
  constructor() {
    super(Int32Array);
  }
}

export class FloatList extends ChunkedList<Float64Array> {
  constructor() {
    super(Float64Array);
  }
}

/** Compressed sparse rows: the items of row r are `items[start[r] .. start[r+1])`. */
export interface Csr {
  start: Int32Array;
  items: Int32Array;
}

/** Groups (row, item) pairs by row, keeping insertion order within a row (a stable counting sort). */
export function buildCsr(rows: number, rowOf: Int32Array, itemOf: Int32Array, count: number): Csr {
  const start = new Int32Array(rows + 1);
  for (let i = 0; i < count; i++) start[rowOf[i] + 1]++;
  for (let r = 0; r < rows; r++) start[r + 1] += start[r];
  const fill = start.slice(0, rows);
  const items = new Int32Array(count);
  for (let i = 0; i < count; i++) items[fill[rowOf[i]]++] = itemOf[i];
  return { start, items };
}
