"""Reads a pgtunnel Avro topic the way a Python team would: confluent-kafka's Consumer with its
AvroDeserializer for keys and values, through a Confluent-compatible registry. Prints one JSON line per
message ({"partition", "offset", "key", "value"}; value null for a tombstone) and stops at the end of
every partition once at least --min messages were read, or fails at --timeout seconds."""
import argparse
import base64
import datetime
import decimal
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    """JSON for what fastavro hands back: decimals and times as strings, bytes as base64."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def main():
    args = argparse.ArgumentParser()
    args.add_argument('--brokers', required=True)
    args.add_argument('--registry', required=True)
    args.add_argument('--topic', required=True)
    args.add_argument('--min', type=int, default=1)
    args.add_argument('--timeout', type=float, default=60)
    opts = args.parse_args()

    registry = SchemaRegistryClient({'url': opts.registry})
    key_decoder = AvroDeserializer(registry)
    value_decoder = AvroDeserializer(registry)
    consumer = Consumer({
        'bootstrap.servers': opts.brokers,
        'group.id': f'python-consumer-{uuid.uuid4()}',
        'auto.offset.reset': 'earliest',
        'enable.partition.eof': True,
        'enable.auto.commit': False,
        # pgtunnel publishes in Kafka transactions
        'isolation.level': 'read_committed',
    })
    consumer.subscribe([opts.topic])
    deadline = time.monotonic() + opts.timeout
    read = 0
    at_end = set()
    assigned = None
    try:
        while True:
            if time.monotonic() > deadline:
                print(f'timed out after {opts.timeout} s with {read} messages read', file=sys.stderr)
                return 2
            msg = consumer.poll(0.5)
            if assigned is None and consumer.assignment():
                assigned = {p.partition for p in consumer.assignment()}
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    if assigned and at_end >= assigned and read >= opts.min:
                        return 0
                    continue
                raise KafkaException(msg.error())
            at_end.discard(msg.partition())
            key = key_decoder(msg.key(), SerializationContext(msg.topic(), MessageField.KEY)) if msg.key() is not None else None
            value = value_decoder(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE)) if msg.value() is not None else None
            print(json.dumps({'partition': msg.partition(), 'offset': msg.offset(), 'key': plain(key), 'value': plain(value)}), flush=True)
            read += 1
    finally:
        consumer.close()


if __name__ == '__main__':
    sys.exit(main())
