// pg-copy-streams ships no types; the copy-both stream (replicationStream.ts) and COPY TO (copyRows.ts) are used.
declare module 'pg-copy-streams' {
  import type { Duplex, DuplexOptions, Readable } from 'node:stream';
  import type { Submittable } from 'pg';
  const copyStreams: {
    both(text: string, options?: DuplexOptions & { alignOnCopyDataFrame?: boolean }): Duplex & Submittable;
    to(text: string): Readable & Submittable;
  };
  export default copyStreams;
}
