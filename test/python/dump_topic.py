"""An oracle independent of pgtunnel's own Kafka client and committed reader: librdkafka (confluent-kafka),
isolation.level=read_committed, reads every partition of a topic from the beginning to its end and prints
one JSON line per record ({"partition", "offset", "key", "value"}: UTF-8 text, value null for a tombstone)."""
import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


def main():
    args = argparse.ArgumentParser()
    args.add_argument('--brokers', required=True)
    args.add_argument('--topic', required=True)
    args.add_argument('--timeout', type=float, default=60)
    opts = args.parse_args()
    consumer = Consumer({
        'bootstrap.servers': opts.brokers,
        'group.id': f'oracle-{uuid.uuid4()}',
        'enable.partition.eof': True,
        'enable.auto.commit': False,
        'isolation.level': 'read_committed',
    })
    meta = consumer.list_topics(opts.topic, timeout=opts.timeout)
    partitions = sorted(meta.topics[opts.topic].partitions)
    if not partitions:
        sys.exit(f'topic {opts.topic} has no partitions')
    consumer.assign([TopicPartition(opts.topic, p, 0) for p in partitions])
    # a read_committed end is the last stable offset: an empty partition reports EOF at once
    pending = set(partitions)
    deadline = time.monotonic() + opts.timeout
    out = sys.stdout
    while pending:
        if time.monotonic() > deadline:
            sys.exit(f'timed out with partitions {sorted(pending)} not read to their end')
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
                continue
            raise KafkaException(msg.error())
        key = msg.key()
        value = msg.value()
        out.write(json.dumps({
            'partition': msg.partition(),
            'offset': msg.offset(),
            'key': None if key is None else key.decode('utf-8'),
            'value': None if value is None else value.decode('utf-8'),
        }) + '\n')
    consumer.close()


if __name__ == '__main__':
    main()
