import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify } from '../../src/errors.js';
import { grantStatements, sqlName } from '../../src/setup/privileges.js';

test('missing privileges become one GRANT per object, names quoted only when they must be', () => {
  const grants = grantStatements('pgtunnel_producer', 'sales', [
    { need: { on: 'schema', schema: 'pgtunnel', privilege: 'USAGE' }, owner: 'installer' },
    { need: { on: 'table', schema: 'public', name: 'emp_cdc', privilege: 'SELECT' }, owner: 'installer' },
    { need: { on: 'table', schema: 'public', name: 'emp_cdc', privilege: 'DELETE' }, owner: 'installer' },
    { need: { on: 'table', schema: 'Shop', name: 'order', privilege: 'SELECT' }, owner: 'app' },
    { need: { on: 'function', schema: 'pgtunnel', name: 'wait_for_commit(text, int, int)', privilege: 'EXECUTE' }, owner: 'installer' },
    { need: { on: 'table owner', schema: 'public', name: 'employees' }, owner: 'app_owner' },
    { need: { on: 'database', privilege: 'CREATE' }, owner: null },
  ]);
  assert.deepEqual(grants, [
    'GRANT USAGE ON SCHEMA pgtunnel TO pgtunnel_producer;',
    'GRANT SELECT, DELETE ON TABLE public.emp_cdc TO pgtunnel_producer;',
    'GRANT SELECT ON TABLE "Shop"."order" TO pgtunnel_producer;',
    'GRANT EXECUTE ON FUNCTION pgtunnel.wait_for_commit(text, int, int) TO pgtunnel_producer;',
    'GRANT app_owner TO pgtunnel_producer;',
    'GRANT CREATE ON DATABASE sales TO pgtunnel_producer;',
  ]);
  assert.equal(sqlName('user'), '"user"');
  assert.equal(sqlName('a"b'), '"a""b"');
});

test('a permission denied met while running names the object and the grant it needs', () => {
  const denied = (message: string) => classify(Object.assign(new Error(message), { code: '42501' }));
  assert.equal(denied('permission denied for table emp_cdc').errorClass, 'config');
  assert.match(denied('permission denied for table emp_cdc').hint!, /ON TABLE emp_cdc TO <role>/);
  assert.match(denied('permission denied to set parameter "session_replication_role"').hint!, /GRANT SET ON PARAMETER session_replication_role TO <role>/);
  assert.match(denied('must be owner of table emp_cdc').hint!, /only the owner of table emp_cdc/);
  assert.match(denied('permission denied for schema pgtunnel').hint!, /ON SCHEMA pgtunnel/);
});
