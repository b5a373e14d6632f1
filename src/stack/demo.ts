import type pg from 'pg';

/** The seed's table, with the primary key pgtunnel needs. */
export const employeesDdl = `CREATE TABLE IF NOT EXISTS public.employees (
  emp_id SERIAL PRIMARY KEY,
  first_name VARCHAR(100),
  last_name VARCHAR(100),
  dob DATE,
  city VARCHAR(100),
  salary INT
)`;

const firstNames = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Radia', 'John'];
const lastNames = ['Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson', 'Perlman', 'Backus', 'Wirth'];
const cities = ['London', 'Paris', 'Berlin', 'Madrid', 'Rome', 'Oslo', 'Vienna', 'Lisbon', 'Prague', 'Dublin'];

export async function ensureEmployees(client: pg.Client): Promise<void> {
  await client.query(employeesDdl);
}

/** Seeds demo rows into an empty employees table; returns how many were written. */
export async function seedEmployees(client: pg.Client, count: number): Promise<number> {
  const { rows } = await client.query<{ empty: boolean }>('SELECT NOT EXISTS (SELECT 1 FROM public.employees) AS empty');
  if (!rows[0]!.empty) return 0;
  await client.query(
    `INSERT INTO public.employees (first_name, last_name, dob, city, salary)
     SELECT ($1::text[])[1 + i % 10], ($2::text[])[1 + (i / 10) % 10], DATE '1960-01-01' + (i * 37 % 15000),
            ($3::text[])[1 + (i * 7) % 10], 3000 + (i * 131) % 9000
     FROM generate_series(1, $4::int) AS i`,
    [firstNames, lastNames, cities, count],
  );
  return count;
}
