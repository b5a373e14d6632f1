import type { Op } from './envelope.js';

/** What a scanner needs of a target table: its columns in order, which are written, which COPY can fill. */
export interface ScanTable {
  key: string[];
  columns: string[];
  writable: boolean[];
  copyable: boolean[];
  types: Record<string, string>;
}

/** What the copy path reads of a record a scanner read as a row (JSON's envelopeScanner.ts, Avro's avroScanner.ts). */
export abstract class RowScan {
  op: Op = 'c';
  /** The canonical key (as keyOfImage writes it); source.ts_ms; whether the after-row names a column the target lacks. */
  keyText = '';
  tsMs = 0;
  unknownColumns = false;
  /** Whether the after-row has a COPY line (every written column copyable, no nested value), and which columns it writes. */
  copyable = false;
  signature = '';
  private readonly writableCount: number;

  constructor(protected readonly table: ScanTable) {
    this.keyJson = table.key.map((k) => JSON.stringify(k));
    this.writableCount = table.writable.filter(Boolean).length;
  }

  /** Each key column's name as JSON, for the canonical key text. */
  protected readonly keyJson: string[];

  /** Whether the after-row carries target column i; whether its value there has a plain text form. */
  protected abstract carries(i: number): boolean;
  protected abstract plain(i: number): boolean;

  /** Which columns the after-row writes (signature '' when every writable one), and whether COPY can take them. */
  protected lineShape(): void {
    let count = 0;
    let copyable = true;
    for (let i = 0; i < this.table.columns.length; i++) {
      if (!this.table.writable[i] || !this.carries(i)) continue;
      count++;
      if (!this.table.copyable[i] || !this.plain(i)) copyable = false;
    }
    this.copyable = copyable;
    // nearly every row carries every column: no string per row for the common case
    this.signature = count === this.writableCount ? '' : this.subsetSignature();
  }

  private subsetSignature(): string {
    let signature = '';
    for (let i = 0; i < this.table.columns.length; i++) if (this.table.writable[i] && this.carries(i)) signature += `${i},`;
    return signature;
  }

  /** The columns of the last row's COPY line, in the target's order. */
  lineColumns(): string[] {
    return this.table.columns.filter((_, i) => this.table.writable[i] && this.carries(i));
  }
}
