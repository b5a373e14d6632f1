import type { ColumnKind, ColumnType } from './columnKinds.js';

/**
 * JSON Schemas (draft-07, which Apicurio and Confluent both validate) of the `json-schema` format, whose
 * payload is exactly the JSON envelope of `format: json`: each column in the form row_to_json writes it
 * (a timestamp as its ISO text, a numeric as a JSON number, NaN and infinities as strings), so nothing is
 * converted and nothing can be lost. `title` names follow the Avro ones (`<topic>.Value`, …).
 */

type Schema = Record<string, unknown>;

const specials = { type: 'string', enum: ['NaN', 'Infinity', '-Infinity'] };

function scalar(c: ColumnType): Schema {
  const kinds: Record<ColumnKind, () => Schema> = {
    int: () => ({ type: 'integer' }),
    long: () => ({ type: 'integer' }),
    float: () => ({ oneOf: [{ type: 'number' }, specials] }),
    double: () => ({ oneOf: [{ type: 'number' }, specials] }),
    decimal: () => ({ oneOf: [{ type: 'number' }, specials], 'connect.parameters': { scale: String(c.scale), 'connect.decimal.precision': String(c.precision) } }),
    numeric: () => ({ oneOf: [{ type: 'number' }, specials] }),
    boolean: () => ({ type: 'boolean' }),
    string: () => ({ type: 'string' }),
    date: () => ({ type: 'string', description: 'YYYY-MM-DD[ BC], infinity, -infinity' }),
    timestamp: () => ({ type: 'string', description: 'YYYY-MM-DDTHH:MM:SS[.ffffff][ BC], infinity, -infinity' }),
    timestamptz: () => ({ type: 'string', 'connect.name': 'io.debezium.time.ZonedTimestamp' }),
    time: () => ({ type: 'string', description: 'HH:MM:SS[.ffffff]' }),
    uuid: () => ({ type: 'string', 'connect.name': 'io.debezium.data.Uuid' }),
    json: () => ({ type: 'string', 'connect.name': 'io.debezium.data.Json' }),
    bytes: () => ({ type: 'string', pattern: '^\\\\x([0-9a-f]{2})*$' }),
    enum: () => ({ type: 'string', 'connect.name': 'io.debezium.data.Enum', 'connect.parameters': { allowed: (c.allowed ?? []).join(',') } }),
    raw: () => ({}),
  };
  return kinds[c.kind]();
}

function column(c: ColumnType): Schema {
  let s = scalar(c);
  for (let d = 0; d < c.dims; d++) s = { type: 'array', items: { oneOf: [{ type: 'null' }, s] } };
  return c.nullable ? { oneOf: [{ type: 'null' }, s] } : s;
}

/**
 * Rows are a closed content model (`additionalProperties: false`) and their columns not `required`: a
 * column added on the source is then a BACKWARD-compatible change (in an open model, old data could hold
 * anything under the new name, so registries refuse it). Removing a property from a closed model is not:
 * a DROP COLUMN needs the subject's compatibility relaxed (docs/encodings-and-registry.md).
 */
function record(title: string, columns: ColumnType[], required = false): Schema {
  const properties = Object.fromEntries(columns.map((c) => [c.name, column(c)]));
  const closed = { type: 'object', title, properties, additionalProperties: false };
  return required ? { ...closed, required: columns.map((c) => c.name) } : closed;
}

const draft = 'http://json-schema.org/draft-07/schema#';

export function keyJsonSchema(topic: string, key: ColumnType[]): Schema {
  return { $schema: draft, ...record(`${topic}.Key`, key.map((c) => ({ ...c, nullable: false })), true) };
}

/** Debezium's `transaction` block (transaction metadata on). */
const transactionBlock = {
  oneOf: [
    { type: 'null' },
    {
      type: 'object',
      title: 'event.block',
      properties: { id: { type: 'string' }, total_order: { type: 'integer' }, data_collection_order: { type: 'integer' } },
      required: ['id', 'total_order', 'data_collection_order'],
    },
  ],
};

export function envelopeJsonSchema(topic: string, columns: ColumnType[], transactions = false): Schema {
  const row = { oneOf: [{ type: 'null' }, record(`${topic}.Value`, columns)] };
  const nullableLong = { type: ['integer', 'null'] };
  return {
    $schema: draft,
    title: `${topic}.Envelope`,
    type: 'object',
    properties: {
      before: row,
      after: row,
      source: {
        type: 'object',
        title: 'io.pgtunnel.Source',
        properties: {
          version: { type: 'string' },
          connector: { type: 'string' },
          name: { type: 'string' },
          ts_ms: { type: 'integer' },
          snapshot: { type: 'string', enum: ['true', 'last', 'false', 'incremental'] },
          db: { type: 'string' },
          schema: { type: 'string' },
          table: { type: 'string' },
          txId: nullableLong,
          lsn: nullableLong,
          schema_version: nullableLong,
        },
        required: ['version', 'connector', 'name', 'ts_ms', 'snapshot', 'db', 'schema', 'table'],
      },
      op: { type: 'string', enum: ['c', 'u', 'd', 'r', 't'] },
      ts_ms: { type: 'integer' },
      ...(transactions ? { transaction: transactionBlock } : {}),
    },
    required: ['before', 'after', 'source', 'op', 'ts_ms'],
  };
}
