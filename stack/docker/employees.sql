-- The seed's employees table, as pgtunnel creates it on the embedded stack (kept equal by a test).
CREATE TABLE IF NOT EXISTS public.employees (
  emp_id SERIAL PRIMARY KEY,
  first_name VARCHAR(100),
  last_name VARCHAR(100),
  dob DATE,
  city VARCHAR(100),
  salary INT
);
