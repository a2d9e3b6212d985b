/** Append-only typed arrays: compact storage for graphs with millions of entries. */

type TypedArray = Float64Array | Int32Array | Uint8Array;

/** A copy of `array` with room for `length` entries (the new ones zero). */
export function grown<T extends TypedArray>(array: T, length: number): T {
  const bigger = new (array.constructor as new (n: number) => T)(length);
  bigger.set(array);
  return bigger;
}

export class IntList {
  data: Int32Array;
  length = 0;
  constructor(capacity = 64) {
    this.data = new Int32Array(Math.max(4, capacity));
  }
  push(value: number): number {
    if (this.length === this.data.length) this.data = grown(this.data, this.data.length * 2);
    this.data[this.length] = value;
    return this.length++;
  }
  /** A trimmed copy. */
  toArray(): Int32Array {
    return this.data.slice(0, this.length);
  }
}

export class FloatList {
  data: Float64Array;
  length = 0;
  constructor(capacity = 64) {
    this.data = new Float64Array(Math.max(4, capacity));
  }
  push(value: number): number {
    if (this.length === this.data.length) this.data = grown(this.data, this.data.length * 2);
    this.data[this.length] = value;
    return this.length++;
  }
  toArray(): Float64Array {
    return this.data.slice(0, this.length);
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
