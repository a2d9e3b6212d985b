/**
 * The values of the last few keys asked for, each made once while it is asked for again: a search asks for the same
 * scenario values, workload, topology or layout costs for thousands of candidates. The oldest key made goes first.
 * Values are shared, so they are read, never changed.
 */
export class Recent<V> {
  private readonly entries = new Map<string, V>();
  constructor(private readonly size: number) {}

  get(key: string, make: () => V): V {
    if (this.entries.has(key)) return this.entries.get(key) as V;
    const value = make();
    this.entries.set(key, value);
    if (this.entries.size > this.size) this.entries.delete(this.entries.keys().next().value!);
    return value;
  }
}
