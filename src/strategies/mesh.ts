/**
 * The device mesh: the GPUs as a grid with one named axis per kind of parallelism.
 *
 * Ranks follow Megatron's order: the tensor-parallel rank varies fastest (so a tensor-parallel group sits inside a
 * node), then the sequence and context axes, then data-parallel replicas, then pipeline stages. A collective over
 * some axes runs among the ranks that share every other coordinate: `group(rank, axes)`.
 */
export const MESH_AXES = ['tp', 'cp', 'sp', 'dap', 'ep', 'dp', 'pp'] as const;
export type MeshAxis = (typeof MESH_AXES)[number];

export type Coordinates = Partial<Record<MeshAxis, number>>;

export class DeviceMesh {
  /** The axes the mesh has (sizes above 1, and always tp, dp and pp), fastest first. */
  readonly axes: readonly MeshAxis[];
  readonly size: number;
  private readonly axisSizes: Record<MeshAxis, number>;
  private readonly strides: Record<MeshAxis, number>;

  /** Axis sizes; an axis left out has size 1. */
  constructor(sizes: Coordinates) {
    this.axisSizes = Object.fromEntries(MESH_AXES.map((axis) => [axis, sizes[axis] ?? 1])) as Record<MeshAxis, number>;
    this.axes = MESH_AXES.filter((axis) => axis === 'tp' || axis === 'dp' || axis === 'pp' || this.axisSizes[axis] > 1);
    const strides = {} as Record<MeshAxis, number>;
    let stride = 1;
    for (const axis of MESH_AXES) {
      if (!Number.isInteger(this.axisSizes[axis]) || this.axisSizes[axis] < 1) throw new RangeError(`mesh axis ${axis} has size ${this.axisSizes[axis]}`);
      strides[axis] = stride;
      stride *= this.axisSizes[axis];
    }
    this.strides = strides;
    this.size = stride;
  }

  /** The size of each of the mesh's axes. */
  sizes(): Coordinates {
    return Object.fromEntries(this.axes.map((axis) => [axis, this.axisSizes[axis]]));
  }

  sizeOf(axis: MeshAxis): number {
    return this.axisSizes[axis];
  }

  coordinate(rank: number, axis: MeshAxis): number {
    return Math.floor(rank / this.strides[axis]) % this.axisSizes[axis];
  }

  /** The rank's coordinate on each of the mesh's axes. */
  coordinates(rank: number): Coordinates {
    const out: Coordinates = {};
    for (const axis of this.axes) out[axis] = this.coordinate(rank, axis);
    return out;
  }

  /** The rank at these coordinates (absent axes at 0). */
  rank(coordinates: Coordinates): number {
    let rank = 0;
    for (const axis of MESH_AXES) rank += (coordinates[axis] ?? 0) * this.strides[axis];
    return rank;
  }

  /** The ranks that share every coordinate of `rank` but those on `axes`, in rank order: a collective's members. */
  group(rank: number, axes: readonly MeshAxis[]): number[] {
    let base = rank;
    for (const axis of axes) base -= this.coordinate(rank, axis) * this.strides[axis];
    let members = [base];
    for (const axis of axes) {
      const next: number[] = [];
      for (let i = 0; i < this.axisSizes[axis]; i++) for (const m of members) next.push(m + i * this.strides[axis]);
      members = next;
    }
    return members.sort((a, b) => a - b);
  }

  /** Ranks per pipeline stage, which hold consecutive ranks: stage s has ranks s·n to (s+1)·n - 1. */
  get ranksPerStage(): number {
    return this.strides.pp;
  }

  /**
   * The groups over `axes` among a pipeline stage's ranks, in order of their first member, and each rank's group by
   * its place in the stage.
   */
  groupsInStage(stage: number, axes: readonly MeshAxis[]): { groups: number[][]; groupOf: Int32Array } {
    const perStage = this.ranksPerStage;
    const first = stage * perStage;
    const groupOf = new Int32Array(perStage).fill(-1);
    const groups: number[][] = [];
    for (let local = 0; local < perStage; local++) {
      if (groupOf[local] >= 0) continue;
      const members = this.group(first + local, axes);
      for (const m of members) groupOf[m - first] = groups.length;
      groups.push(members);
    }
    return { groups, groupOf };
  }
}
