import fc from 'fast-check';

/**
 * Property tests run with a pinned seed so every run is reproducible; set
 * FC_SEED to explore other cases. On failure fast-check prints the seed and the
 * counterexample path to replay it ({ seed, path } in fc.assert).
 */
const seed = Number(process.env.FC_SEED ?? 20261125);
fc.configureGlobal({ seed, numRuns: Number(process.env.FC_RUNS ?? 100) });
