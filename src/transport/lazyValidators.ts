import { createRequire } from 'node:module';

/**
 * @platformatic/kafka compiles ~40 ajv validators of client options when it is imported — about half of the
 * import's CPU (0.5 of 1.0–1.2 s measured) — and calls them only for clients made with `strict: true`, which we
 * never are. Every `pgtunnel` process imports it in up to three threads, so each validator here compiles on its
 * first call instead. Must run before the client's modules evaluate: transport/kafkaLib.ts imports this first.
 * The ajv patched is the one the client itself resolves (its own require), so a second copy elsewhere is untouched.
 */
type Validator = ((data: unknown) => boolean) & { errors?: unknown };
type Compile = (this: unknown, schema: unknown, meta?: boolean) => Validator;

const client = createRequire(import.meta.url).resolve('@platformatic/kafka');
const { Ajv2020 } = createRequire(client)('ajv/dist/2020.js') as { Ajv2020: { prototype: { compile: Compile } } };
const compile = Ajv2020.prototype.compile;
if (!(compile as { lazy?: boolean }).lazy) {
  const lazyCompile: Compile = function (this: unknown, schema, meta) {
    let real: Validator | undefined;
    const validate: Validator = (data) => {
      real ??= compile.call(this, schema, meta);
      const valid = real(data);
      validate.errors = real.errors;
      return valid;
    };
    return validate;
  };
  Ajv2020.prototype.compile = Object.assign(lazyCompile, { lazy: true });
}
