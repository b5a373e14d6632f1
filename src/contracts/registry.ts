import { TunnelError } from '../errors.js';
import type { Logger } from '../instruments/log.js';
import { redact, registerSecret } from '../redact.js';
import type { RegistryAccess } from '../config/load.js';
import { compositeKey } from '../names.js';

/**
 * A client of the Confluent Schema Registry REST API, as Confluent, Apicurio (`/apis/ccompat/v7`),
 * Karapace and Redpanda serve it: plain fetch with a timeout per request and HTTP basic auth.
 */

export type SchemaType = 'AVRO' | 'JSON';

export interface RegisteredSchema {
  id: number;
  version: number;
  schema: string;
  schemaType: SchemaType;
}

/** The compatibility pgtunnel gives a subject it creates (Apicurio's default is NONE, Confluent's BACKWARD). */
export const defaultCompatibility = 'BACKWARD';

const contentType = 'application/vnd.schemaregistry.v1+json';
const timeoutMs = 10_000;

/** Confluent's error codes (`error_code` in the body) for what does not exist. */
const subjectNotFound = 40401;
const versionNotFound = 40402;
const noSubjectConfig = 40408;
const schemaNotFound = 40403;

interface RegistryErrorBody {
  error_code?: number;
  message?: string;
}

export class SchemaRegistry {
  readonly url: string;
  private readonly authorization?: string;
  private readonly byId = new Map<number, { schema: string; schemaType: SchemaType }>();
  /** subject and schema (names.compositeKey) → id: registering the same schema again asks the registry nothing. */
  private readonly registered = new Map<string, number>();
  /** Subjects whose compatibility this client has seen to or set. */
  private readonly configured = new Set<string>();

  constructor(access: RegistryAccess, private readonly log?: Logger) {
    // fetch refuses URLs with user info: take it out and send it as the basic-auth header
    const u = new URL(access.url);
    const username = access.username ?? (u.username ? decodeURIComponent(u.username) : undefined);
    const password = access.password ?? (u.password ? decodeURIComponent(u.password) : undefined);
    registerSecret(password);
    u.username = '';
    u.password = '';
    this.url = u.href.replace(/\/+$/, '');
    if (username !== undefined) this.authorization = `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
  }

  /** Registers the schema under the subject (or finds it there) and returns its id. */
  async register(subject: string, schema: string, schemaType: SchemaType): Promise<number> {
    const key = compositeKey(subject, schema);
    const known = this.registered.get(key);
    if (known !== undefined) return known;
    await this.ensureCompatibility(subject);
    // Confluent's own clients leave schemaType out for Avro, its default; some registries reject "AVRO".
    const body = schemaType === 'AVRO' ? { schema } : { schema, schemaType };
    const { id } = await this.request<{ id: number }>('POST', `/subjects/${enc(subject)}/versions`, body, subject);
    this.registered.set(key, id);
    this.byId.set(id, { schema, schemaType });
    this.log?.debug({ subject, id }, 'schema registered');
    return id;
  }

  /** The schema with this id; ids are immutable, so each is fetched once. */
  async schemaById(id: number): Promise<{ schema: string; schemaType: SchemaType }> {
    const cached = this.byId.get(id);
    if (cached) return cached;
    const body = await this.request<{ schema: string; schemaType?: string }>('GET', `/schemas/ids/${id}`);
    const found = { schema: body.schema, schemaType: typeOf(body.schemaType) };
    this.byId.set(id, found);
    return found;
  }

  /** The subject's latest version, or undefined when the subject does not exist. */
  async latest(subject: string): Promise<RegisteredSchema | undefined> {
    const body = await this.optional(() => this.request<{ id: number; version: number; schema: string; schemaType?: string }>('GET', `/subjects/${enc(subject)}/versions/latest`));
    if (!body) return undefined;
    const schemaType = typeOf(body.schemaType);
    this.byId.set(body.id, { schema: body.schema, schemaType });
    return { id: body.id, version: body.version, schema: body.schema, schemaType };
  }

  /** The subject's version numbers, oldest first; [] when the subject does not exist. */
  async versions(subject: string): Promise<number[]> {
    const versions = await this.optional(() => this.request<number[]>('GET', `/subjects/${enc(subject)}/versions`));
    return (versions ?? []).sort((a, b) => a - b);
  }

  /** The subject's compatibility level, or the registry's global one when the subject has none of its own. */
  async compatibility(subject: string): Promise<string> {
    const own = await this.subjectCompatibility(subject);
    if (own) return own;
    const global = await this.request<{ compatibilityLevel?: string; compatibility?: string }>('GET', '/config');
    return global.compatibilityLevel ?? global.compatibility ?? 'BACKWARD';
  }

  async setCompatibility(subject: string, level: string): Promise<void> {
    await this.request('PUT', `/config/${enc(subject)}`, { compatibility: level }, subject);
    this.configured.add(subject);
  }

  /** A subject new to the registry gets BACKWARD; one that exists, or has a level of its own, is left as it is. */
  private async ensureCompatibility(subject: string): Promise<void> {
    if (this.configured.has(subject)) return;
    if ((await this.versions(subject)).length === 0 && !(await this.subjectCompatibility(subject))) {
      await this.setCompatibility(subject, defaultCompatibility);
      this.log?.info({ subject, compatibility: defaultCompatibility }, 'new registry subject: compatibility set');
    }
    this.configured.add(subject);
  }

  private async subjectCompatibility(subject: string): Promise<string | undefined> {
    const body = await this.optional(() => this.request<{ compatibilityLevel?: string; compatibility?: string }>('GET', `/config/${enc(subject)}`));
    return body?.compatibilityLevel ?? body?.compatibility;
  }

  /** undefined for the registry's "not found" answers (subject, version, subject config). */
  private async optional<T>(body: () => Promise<T>): Promise<T | undefined> {
    try {
      return await body();
    } catch (err) {
      if (err instanceof NotFound) return undefined;
      throw err;
    }
  }

  private async request<T>(method: string, path: string, body?: unknown, subject?: string): Promise<T> {
    const where = `${method} ${this.url}${path}`;
    let response: Response;
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          accept: `${contentType}, application/json`,
          ...(body === undefined ? {} : { 'content-type': contentType }),
          ...(this.authorization ? { authorization: this.authorization } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const reason = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : causeOf(err);
      throw unreachable(this.url, `the schema registry cannot be reached (${where}: ${reason})`, err);
    }
    const text = await response.text().catch(() => '');
    if (!response.ok) throw this.refusal(response.status, text, where, subject);
    try {
      return (text ? JSON.parse(text) : undefined) as T;
    } catch {
      throw notAnApi(`${where} answered something other than JSON (${redact(text.slice(0, 100))}…)`);
    }
  }

  private refusal(status: number, text: string, where: string, subject: string | undefined): Error {
    let parsed: RegistryErrorBody = {};
    try {
      parsed = JSON.parse(text) as RegistryErrorBody;
    } catch {
      // not JSON: a proxy's page, or not a registry at all
    }
    const said = redact(parsed.message ?? text.slice(0, 300)) || `HTTP ${status}`;
    const code = parsed.error_code;
    if (status === 404 && (code === subjectNotFound || code === versionNotFound || code === noSubjectConfig)) return new NotFound(said);
    if (status === 404 && code === schemaNotFound) {
      return new TunnelError('PGT_REGISTRY_NO_SCHEMA', `the schema registry has no such schema (${where}: ${said})`, {
        errorClass: 'fatal',
        hint: 'the record was written with a schema id of another registry: point registryUrl at the registry its producer registers in',
      });
    }
    if (status === 409) {
      return new TunnelError('PGT_REGISTRY_INCOMPATIBLE', `the schema registry refused the new schema of ${subject}: ${said}`, {
        errorClass: 'fatal',
        hint: `make the table change backward compatible (a new column nullable or with a default; no dropped key column), or set the subject's compatibility (PUT ${this.url}/config/${subject ?? '<subject>'} {"compatibility":"NONE"}), or give the table a new topic`,
      });
    }
    if (status === 401 || status === 403) {
      return new TunnelError('PGT_REGISTRY_AUTH', `the schema registry refused the credentials (${where}: HTTP ${status} ${said})`, {
        errorClass: 'config',
        hint: 'set registryUsername and registryPassword (or registryPasswordFile, PGTUNNEL_REGISTRY_PASSWORD) to a user the registry accepts and allows to register schemas',
      });
    }
    // a 404 without a registry's error code: the URL is not a Confluent-compatible API
    if (status === 404 && code === undefined) return notAnApi(`${where} answered 404 (${said})`);
    if (status >= 500 || status === 408 || status === 429) {
      return unreachable(this.url, `the schema registry failed to answer (${where}: HTTP ${status} ${said})`, undefined);
    }
    return new TunnelError('PGT_REGISTRY_REFUSED', `the schema registry refused ${where}: HTTP ${status} ${said}`, {
      errorClass: 'fatal',
      hint: status === 422 ? 'the registry found the schema invalid: report it with the table definition (a pgtunnel bug)' : 'see the registry\'s message',
    });
  }
}

/** The registry's "does not exist" answer, turned into undefined/[] by the read methods. */
class NotFound extends Error {}

function unreachable(url: string, message: string, cause: unknown): TunnelError {
  return new TunnelError('PGT_REGISTRY_UNREACHABLE', redact(message), {
    errorClass: 'unreachable',
    cause,
    hint: `check that the registry at ${redact(url)} runs and registryUrl names it (the embedded one: pgtunnel stack up --registry)`,
  });
}

function notAnApi(message: string): TunnelError {
  return new TunnelError('PGT_REGISTRY_NOT_FOUND', message, {
    errorClass: 'config',
    hint: 'registryUrl must be the base of a Confluent-compatible API: for Apicurio http://host:8080/apis/ccompat/v7, for Confluent/Karapace/Redpanda http://host:8081',
  });
}

function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

function typeOf(schemaType: string | undefined): SchemaType {
  // Confluent (and Apicurio's ccompat) leave schemaType out for Avro
  return (schemaType ?? 'AVRO') as SchemaType;
}

function enc(subject: string): string {
  return encodeURIComponent(subject);
}
