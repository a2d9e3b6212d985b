/** The simulator's version, stamped into reports and traces. Kept in step with package.json by a test. */
export const VERSION = '0.1.0';
