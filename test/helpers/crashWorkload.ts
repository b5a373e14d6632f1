import { query, waitFor } from './services.js';
import type { TunnelProcess } from './tunnelProcess.js';

/**
 * The crash tests' workload on the seed's employees table (2,000 rows applied): a steady stream of updates with a
 * SIGKILL of `tunnel` in the middle of it, then 1,000 changes while no tunnel runs.
 */
export async function killMidStream(sourceUrl: string, targetUrl: string, tunnel: TunnelProcess): Promise<void> {
  const writer = (async () => {
    for (let i = 0; i < 200; i++) await query(sourceUrl, `UPDATE employees SET salary = salary + 1 WHERE emp_id % 200 = ${i}`);
  })();
  await waitFor('some streamed changes applied', async () => (await query<{ n: number }>(targetUrl, 'SELECT count(*)::int AS n FROM employees WHERE salary <> emp_id'))[0]!.n > 0);
  await tunnel.kill('SIGKILL');
  await writer;
  await query(sourceUrl, `
    INSERT INTO employees (first_name, salary) SELECT 'down' || i, i FROM generate_series(1, 400) i;
    UPDATE employees SET city = 'moved' WHERE emp_id BETWEEN 1 AND 400;
    DELETE FROM employees WHERE emp_id BETWEEN 401 AND 600`);
}
