import type { DeviceCursor } from './attention-phase.js';
import type { StepEmitter } from './emitter.js';
import { KIND, LANE } from './resources.js';
import { plannedOver, type CollectiveGroup } from './segments.js';

/**
 * The blocking collectives after a segment's compute (Megatron's synchronous tensor-parallel collectives, DAP's
 * all-to-alls): one operation per kind, each after the one before, which the members' next compute waits for.
 *
 * Or, for the axes a program overlaps (FastFold's duality asynchronous operations), alongside the compute: each
 * member's compute gets a zero-length start before it on the compute lane, which takes the compute's waits and which
 * the collectives follow, and a zero-length join after both, which what comes next waits for.
 */
export class BlockingCollectives {
  constructor(
    private readonly emit: StepEmitter,
    private readonly cursor: DeviceCursor,
  ) {}

  /**
   * `steps` over `members` (devices; `first` is the stage's first) after what each did last, or, with `alongside`
   * (per member by place in the stage, the start of the compute just emitted), after that start instead.
   */
  after(steps: readonly CollectiveGroup[], members: readonly number[], first: number, labelOf: (kind: number) => number, alongside?: Int32Array): void {
    const { lastOps, lastBlocking, lastOpOf } = this.cursor;
    const g = this.emit.graph;
    const size = members.length;
    const stride = size > 1 ? members[1] - members[0] : 1;
    let previous = -1;
    for (let i = 0; i < steps.length; i++) {
      const c = steps[i];
      const op = this.emit.groupCollective(plannedOver(c, size), c.kind, members[0], size, stride, LANE.tp, labelOf(KIND[c.kind]));
      if (previous >= 0) g.dependOn(op, previous);
      else {
        for (let m = 0; m < size; m++) {
          const local = members[m] - first;
          const before = alongside ? alongside[local] : lastOps[local];
          g.dependOn(op, before);
          // A transfer the member must also wait for (a ring's last gradient hop into it).
          const blocking = lastBlocking[members[m]];
          if (!alongside && blocking >= 0 && blocking !== before) g.dependOn(op, blocking);
        }
      }
      previous = op;
    }
    for (let m = 0; m < size; m++) {
      const device = members[m];
      if (!alongside) lastOps[device - first] = previous;
      lastBlocking[device] = previous;
      lastOpOf[device] = previous;
    }
  }

  /** Overlapped: a zero-length join on each member's compute lane after its compute and its collectives. */
  join(members: readonly number[], first: number, label: number): void {
    const { lastOps, lastBlocking, lastOpOf } = this.cursor;
    const g = this.emit.graph;
    for (let m = 0; m < members.length; m++) {
      const device = members[m];
      const local = device - first;
      const join = g.operation(label, device, 0);
      g.lane(this.emit.resources.lane(device, LANE.compute));
      g.dependOn(join, lastOps[local]);
      g.dependOn(join, lastBlocking[device]);
      lastOps[local] = lastBlocking[device] = lastOpOf[device] = join;
    }
  }
}
