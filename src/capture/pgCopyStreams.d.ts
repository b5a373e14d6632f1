// pg-copy-streams ships no types; only the copy-both stream is used (replicationStream.ts).
declare module 'pg-copy-streams' {
  import type { Duplex, DuplexOptions } from 'node:stream';
  import type { Submittable } from 'pg';
  const copyStreams: {
    both(text: string, options?: DuplexOptions & { alignOnCopyDataFrame?: boolean }): Duplex & Submittable;
  };
  export default copyStreams;
}
