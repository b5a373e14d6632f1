import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { httpGet } from '../helpers/httpGet.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { freePort } from '../../testkit/testStack.js';

interface Ready {
  status: number;
  body: { status: string; parts: Record<string, { state: string; reason?: string }> };
}

/** A tunnel serving HTTP on a port chosen here; started, not waited for (a standby never streams). */
async function started(t: TestContext, env: Record<string, string>): Promise<{ tunnel: InProcessTunnel; ready: () => Promise<Ready> }> {
  const port = await freePort();
  const tunnel = await InProcessTunnel.start(t, { ...env, PGTUNNEL_HTTP_HOST: '127.0.0.1', PGTUNNEL_HTTP_PORT: String(port) }, { waitForStreaming: false });
  return {
    tunnel,
    ready: async () => {
      const answer = await httpGet(`http://127.0.0.1:${port}/ready`);
      return { status: answer.status, body: JSON.parse(answer.body) };
    },
  };
}

const producerPart = (r: Ready) => Object.entries(r.body.parts).find(([part]) => part.includes('employees') && part.includes('producer'))?.[1];

test('a standby behind a squatter on the producer lock is not ready and names it; behind a live pgtunnel leader it is', { timeout: 150_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  // A plain session, not pgtunnel, takes the table's producer lock first and keeps it.
  const squatter = new pg.Client({ connectionString: db.sourceUrl, application_name: 'squatter' });
  await squatter.connect();
  onCleanup(t, () => squatter.end().catch(() => {}));
  await squatter.query("SELECT pg_advisory_lock(hashtext('pgtunnel.producer'), hashtext('public.employees'))");
  const squatterPid = (await squatter.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

  const a = await started(t, db.env);
  const blocked = await waitFor('/ready to say 503 with the squatter', async () => {
    const r = await a.ready();
    return r.status === 503 && producerPart(r)?.state === 'waiting' ? r : undefined;
  }, 60_000, 200);
  assert.equal(blocked.body.status, 'not ready');
  const reason = producerPart(blocked)!.reason!;
  assert.match(reason, new RegExp(`not a pgtunnel producer \\(pid ${squatterPid}, application_name "squatter", client `));
  assert.match(reason, new RegExp(`pg_terminate_backend\\(${squatterPid}\\)`));

  // The squatter leaves: this tunnel leads and publishes.
  await squatter.end();
  await waitFor('/ready 200 once the lock is free', async () => (await a.ready()).status === 200, 30_000, 200);
  await a.tunnel.waitForStreaming(30_000);
  await query(db.sourceUrl, "INSERT INTO employees VALUES (1, 'After', 'Squatter', '2010-01-01', 'Oslo', 50000)");
  await waitFor('the change applied', async () => (await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 1')).length === 1, 30_000, 100);

  // A second tunnel stands by behind the live pgtunnel leader: that is ready.
  const b = await started(t, db.env);
  await b.tunnel.waitForEvents('pgtunnel:leadership', 'the second producer standing by', (e) => e.some((l) => l.table === 'public.employees' && l.state === 'standby'), 60_000);
  const standby = await waitFor('the standby ready', async () => {
    const r = await b.ready();
    return r.status === 200 && producerPart(r)?.state === 'standby' ? r : undefined;
  }, 60_000, 200);
  assert.equal(standby.body.status, 'ready');
  await b.tunnel.stop();
  await a.tunnel.stop();
});
