/** Confluent's wire format: magic byte 0, the schema id as 4 bytes big-endian, then the Avro binary or JSON text. */
export const magicByte = 0;

export function frame(id: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = magicByte;
  out.writeUInt32BE(id, 1);
  payload.copy(out, 5);
  return out;
}

export class WireFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireFormatError';
  }
}

/** A record value or key in the wire format: JSON text never starts with byte 0. */
export function isFramed(bytes: Buffer | null | undefined): boolean {
  return bytes !== null && bytes !== undefined && bytes.length > 0 && bytes[0] === magicByte;
}

export function unframe(bytes: Buffer): { id: number; payload: Buffer } {
  if (bytes.length < 5) throw new WireFormatError(`${bytes.length} bytes are too short for the wire format (magic byte and 4-byte schema id)`);
  if (bytes[0] !== magicByte) throw new WireFormatError(`magic byte ${bytes[0]} is not ${magicByte}`);
  return { id: bytes.readUInt32BE(1), payload: bytes.subarray(5) };
}

/** Where encodings are written before their exact-size copy: grown when a record does not fit. */
let scratch = Buffer.allocUnsafe(64 * 1024);

/** frame(id, type.toBuffer(value)) with one allocation and one copy instead of two of each. */
export function frameEncoded(id: number, type: { encode(value: unknown, buf: Buffer, pos: number): number }, value: unknown): Buffer {
  for (;;) {
    const end = type.encode(value, scratch, 5);
    if (end >= 0) {
      const out = Buffer.allocUnsafe(end);
      scratch.copy(out, 0, 0, end);
      out[0] = magicByte;
      out.writeUInt32BE(id, 1);
      return out;
    }
    // encode returns minus the bytes missing
    scratch = Buffer.allocUnsafe(Math.max(2 * scratch.length, scratch.length - end));
  }
}
