"""Airflow schedules the pgtunnel producer: every minute, publish what the source committed, then apply it.

`publish` runs `pgtunnel run --role producer --once`: it publishes everything committed in the source
before it started (the snapshot first, on the first run) to Kafka and exits 0, or non-zero with the
reason (Airflow retries it). `apply` runs `pgtunnel run --role consumer --once`: it applies everything
published before it started and exits once the target has it. Dead letters do not fail a task; they are
logged (`pgtunnel dlq list`).

With an always-on consumer (`pgtunnel run --role consumer`, lowest latency), delete the `apply` task.

The tasks run `$PGTUNNEL_CMD` (default `pgtunnel`, e.g. after `npm install -g`) and pass the worker's
environment on: set PGTUNNEL_SOURCE_URL, PGTUNNEL_TARGET_URL, PGTUNNEL_KAFKA_BROKERS (or PGTUNNEL_CONFIG
naming a pgtunnel.yaml) where the Airflow worker runs.
"""

import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

PGTUNNEL = os.environ.get("PGTUNNEL_CMD", "pgtunnel")
# pgtunnel gives up (naming what it waited for) before Airflow kills the task, so the log says why.
TIMEOUT = timedelta(minutes=10)
PGTUNNEL_TIMEOUT = f"{int(TIMEOUT.total_seconds()) - 30}s"

with DAG(
    dag_id="pgtunnel",
    description="pgtunnel: publish the source's committed changes to Kafka, then apply them to the target",
    schedule=timedelta(minutes=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # one run at a time: a long first snapshot delays the next runs instead of overlapping them
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=15),
        # a task pointed at a dead service must not hang forever
        "execution_timeout": TIMEOUT,
    },
    tags=["pgtunnel"],
) as dag:
    publish = BashOperator(
        task_id="publish",
        bash_command=f"{PGTUNNEL} run --role producer --once --timeout {PGTUNNEL_TIMEOUT}",
    )
    apply = BashOperator(
        task_id="apply",
        bash_command=f"{PGTUNNEL} run --role consumer --once --timeout {PGTUNNEL_TIMEOUT}",
    )
    publish >> apply
