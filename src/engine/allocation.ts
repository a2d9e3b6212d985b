/**
 * Where the graph builder and the executor get their large zeroed arrays.
 *
 * By default they allocate plain typed arrays. A caller may pass a hook instead, whose arrays live on shared memory
 * and have their pages faulted in ahead of the writes by a helper thread (see page-warmer.ts). The hook only
 * changes where memory comes from, never a value: results are the same with and without one.
 */
export type TypedArray = Float64Array | Int32Array | Uint8Array;
/** A typed-array class that can also view a shared buffer. */
export type ColumnConstructor<T> = (new (length: number) => T) & (new (buffer: SharedArrayBuffer) => T) & { BYTES_PER_ELEMENT: number };

export interface AllocationHook {
  /**
   * A zeroed array of `length` elements that its user fills from the start, with a slot to report the fill in:
   * preparing pays up to `aheadElements` past the fill.
   */
  follow<T extends TypedArray>(make: ColumnConstructor<T>, length: number, aheadElements: number): { array: T; slot: number };
  /** The array in `slot` is filled up to `elements` (seen at the next `publish`). */
  filled(slot: number, elements: number): void;
  /** The array in `slot` is complete. */
  finished(slot: number): void;
  /** Makes the reported fills visible. */
  publish(): void;
  /** Told once, by the graph builder, how many operations it reserved room for: the step's one estimate. */
  reserved?(operations: number): void;
  /** A zeroed array of `length` elements for the executor's per-operation state (maybe prepared since `reserved`). */
  perOperation?<T extends Float64Array | Int32Array>(make: ColumnConstructor<T>, length: number): T;
}
