import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { httpGet } from '../helpers/httpGet.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { freePort } from '../../testkit/testStack.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';

const rulesFile = fileURLToPath(new URL('../../../examples/employees-rules.yaml', import.meta.url));
const token = 'a-test-token-0123456789';

async function started(t: Parameters<typeof TunnelProcess.start>[0], env: Record<string, string>): Promise<{ tunnel: TunnelProcess; port: string }> {
  const tunnel = await TunnelProcess.start(t, env);
  await tunnel.waitForLog('dashboard at http://');
  return { tunnel, port: tunnel.output.match(/dashboard at http:\/\/[^ ]*?:(\d+)\//)![1]! };
}

test('the HTTP port answers only its own Host names, and the dashboard and /api only with the token', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const port = await freePort();
  const tunnel = await InProcessTunnel.start(t, { ...db.env, PGTUNNEL_CONFIG: rulesFile, PGTUNNEL_HTTP_TOKEN: token, PGTUNNEL_HTTP_HOST: '127.0.0.1', PGTUNNEL_HTTP_PORT: String(port) });
  const base = `http://127.0.0.1:${port}`;
  assert.ok(!tunnel.logLines.join('\n').includes(token), 'the token is never logged');
  // DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1.
  for (const p of ['/', '/api/status', `/api/status?token=${token}`]) {
    assert.equal((await httpGet(`${base}${p}`, { host: `evil.example:${port}` })).status, 421, `${p} with a foreign Host`);
  }
  assert.equal((await httpGet(`${base}/health`, { host: `evil.example:${port}` })).status, 200, 'liveness answers any Host');
  for (const p of ['/metrics', '/ready']) assert.equal((await httpGet(`${base}${p}`, { host: `evil.example:${port}` })).status, 421, `${p} checks the Host too`);
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
    assert.equal((await httpGet(`${base}/api/status`, { host, authorization: `Bearer ${token}` })).status, 200, host);
  }
  // The token: required by the dashboard and /api/*, as a Bearer header or ?token=.
  assert.equal((await httpGet(`${base}/api/status`)).status, 401);
  assert.equal((await httpGet(`${base}/`)).status, 401);
  assert.equal((await httpGet(`${base}/api/status`, { authorization: 'Bearer wrong-token-0123456789' })).status, 401);
  assert.equal((await httpGet(`${base}/api/status?token=${token}`)).status, 200);
  assert.equal((await httpGet(`${base}/?token=${token}`)).status, 200);
  for (const p of ['/metrics', '/health']) assert.equal((await httpGet(`${base}${p}`)).status, 200, `${p} stays open`);
  // Row data (a dead letter's key and reason) is there behind the token, and never in the open paths.
  await query(db.sourceUrl, "INSERT INTO employees VALUES (2, 'Low', 'Pay', '2010-01-01', 'Paris', 5000)");
  const status = await waitFor('the dead letter in /api/status', async () => {
    const body = JSON.parse((await httpGet(`${base}/api/status`, { authorization: `Bearer ${token}` })).body);
    return body.deadLetters.length > 0 ? body : undefined;
  }, 20_000, 200);
  assert.equal(status.deadLetters[0].key, '{"emp_id":2}');
  assert.match(JSON.stringify(status.deadLetters[0]), /salary is 5000/);
  for (const p of ['/metrics', '/health', '/ready']) assert.ok(!/emp_id|salary is|Low|Paris/.test((await httpGet(`${base}${p}`)).body), `${p} holds no row data`);
  await tunnel.stop();
});

// A process: the warning is also written to its stderr, past the log.
test('bound beyond loopback without a token: a loud warning, and dead letters without their row data', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const { tunnel, port } = await started(t, { ...db.env, PGTUNNEL_CONFIG: rulesFile, PGTUNNEL_HTTP_HOST: '0.0.0.0' });
  assert.match(tunnel.output, /WARNING: the dashboard and metrics listen on 0\.0\.0\.0, reachable from other machines WITHOUT a token/);
  assert.match(tunnel.output, /"level":40.*listen on 0\.0\.0\.0/);
  const base = `http://127.0.0.1:${port}`;
  await query(db.sourceUrl, "INSERT INTO employees VALUES (2, 'Low', 'Pay', '2010-01-01', 'Paris', 5000)");
  const status = await waitFor('the dead letter in /api/status', async () => {
    const body = JSON.parse((await httpGet(`${base}/api/status`)).body);
    return body.deadLetters.length > 0 ? body : undefined;
  }, 20_000, 200);
  assert.equal(status.rowData, false);
  assert.deepEqual({ ...status.deadLetters[0], time: undefined }, { time: undefined, table: 'public.employees', errorClass: 'rule', rule: 'salary-above-10000', key: null, message: 'row data hidden: set httpToken to see it' });
  assert.equal((await httpGet(`${base}/api/status`, { host: `0.0.0.0:${port}` })).status, 200, 'the bind address itself is an allowed Host');
  assert.equal((await httpGet(`${base}/api/status`, { host: `10.1.2.3:${port}` })).status, 421, 'an address not in httpAllowedHosts');
  await tunnel.stop();
});
