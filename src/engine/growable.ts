/**
 * Append-only typed arrays: compact storage for graphs with millions of entries.
 *
 * On the machines dtsim runs on, touching fresh memory costs far more than computing on it (a page fault per
 * 4 KiB, several milliseconds per MiB on virtual machines), while memory reserved but never written costs
 * nothing. So a list reserves its expected size up front, hands its entries out as a view without copying, and
 * doubles (one copy) only when the reservation was too small.
 */

type TypedArray = Float64Array | Int32Array | Int16Array | Uint8Array;
type TypedArrayConstructor<T extends TypedArray> = new (length: number) => T;

/** A copy of `array` with room for `length` entries (the new ones zero). */
export function grown<T extends TypedArray>(array: T, length: number): T {
  const bigger = new (array.constructor as TypedArrayConstructor<T>)(length);
  bigger.set(array);
  return bigger;
}

export class TypedList<T extends TypedArray> {
  length = 0;
  private data: T;

  /** `storage`, if given, is the reservation (zeroed), allocated by the caller. */
  constructor(make: TypedArrayConstructor<T>, reserve = 1024, storage?: T) {
    this.data = storage ?? new make(Math.max(16, Math.ceil(reserve)));
  }

  /** Appends `value`; returns its index. */
  push(value: number): number {
    if (this.length === this.data.length) this.data = grown(this.data, this.data.length * 2);
    this.data[this.length] = value;
    return this.length++;
  }

  get(index: number): number {
    return this.data[index];
  }

  /** Overwrites an entry already pushed. */
  set(index: number, value: number): void {
    this.data[index] = value;
  }

  /** The entries, without copying: later pushes may or may not show through, so take the view when done. */
  view(): T {
    return this.data.subarray(0, this.length) as T;
  }
}

/** Compressed sparse rows: the items of row r are `items[start[r] .. start[r+1])`. */
export interface Csr {
  start: Int32Array;
  items: Int32Array;
}

/** Groups (row, item) pairs by row, keeping insertion order within a row (a stable counting sort). */
export function buildCsr(rows: number, rowOf: Int32Array, itemOf: Int32Array, count: number): Csr {
  const { start, sorted } = rowEnds(rows, rowOf.subarray(0, count));
  if (sorted) return { start: rowStarts(start), items: itemOf.subarray(0, count) };
  const items = new Int32Array(count);
  for (let i = count - 1; i >= 0; i--) items[--start[rowOf[i]]] = itemOf[i];
  return { start, items };
}

/** The CSR of columns to rows: row r of the result lists, in order, the rows whose items include r. */
export function transposeCsr(csr: Csr, columns: number): Csr {
  const { start } = rowEnds(columns, csr.items);
  const items = new Int32Array(csr.items.length);
  for (let r = csr.start.length - 2; r >= 0; r--) {
    for (let i = csr.start[r + 1] - 1; i >= csr.start[r]; i--) items[--start[csr.items[i]]] = r;
  }
  return { start, items };
}

/**
 * Counts entries per row into running sums: `start[r]` is where row r ends, and `start[rows]` the total. Placing
 * entries backwards at `--start[row]` then keeps each row stable and leaves `start[r]` at the row's beginning,
 * with no second array of positions.
 */
function rowEnds(rows: number, rowOf: Int32Array): { start: Int32Array; sorted: boolean } {
  const count = rowOf.length;
  const start = new Int32Array(rows + 1);
  let sorted = true;
  for (let i = 0; i < count; i++) {
    start[rowOf[i]]++;
    if (i > 0 && rowOf[i] < rowOf[i - 1]) sorted = false;
  }
  for (let r = 1; r < rows; r++) start[r] += start[r - 1];
  start[rows] = count;
  return { start, sorted };
}

/** Row ends shifted into row starts, for entries that need no placing. */
function rowStarts(ends: Int32Array): Int32Array {
  for (let r = ends.length - 2; r > 0; r--) ends[r] = ends[r - 1];
  ends[0] = 0;
  return ends;
}
