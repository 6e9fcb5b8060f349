"""What a user would write instead of Sluice + mask-pii: a confluent-kafka consume -> mask ->
produce loop, at-least-once (offsets are committed only after the produced records are flushed).

Run by `make bench-e2e` (host/benches/e2e.rs), which measures it beside Sluice on the same mock
cluster: `python e2e_loop.py BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC GROUP`. Runs until killed.

The masking is examples/plugins/rust-mask-pii's (fields `email` and `phone`), written the way a
Python programmer would: the standard json module, compact output, key order kept. A record the
plugin would reject stops the loop with the reason (this loop has no dead-letter topic).
"""

import json
import sys

from confluent_kafka import Consumer, KafkaException, Producer

FIELDS = ("email", "phone")
BATCH = 1000


def mask_email(email):
    local, at, domain = email.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise ValueError(f"invalid email `{email}`")
    return f"{local[0]}****@{domain}"


def mask_tail(text):
    total = sum(1 for c in text if c.isalnum())
    seen = 0
    out = []
    for c in text:
        if c.isalnum():
            seen += 1
            out.append(c if seen + 2 > total else "*")
        else:
            out.append(c)
    return "".join(out)


def mask(value):
    if value is None:
        raise ValueError("record has no value")
    user = json.loads(value)
    if type(user) is not dict:
        raise ValueError("value is not a JSON object")
    id_ = user.get("id")
    if type(id_) is not str or not id_:
        raise ValueError("missing or empty string field `id`")
    for field in FIELDS:
        if field not in user:
            continue
        text = user[field]
        if type(text) is not str:
            raise ValueError(f"field `{field}` is not a string")
        user[field] = mask_email(text) if "email" in field else mask_tail(text)
    return json.dumps(user, ensure_ascii=False, separators=(",", ":")).encode()


def main():
    bootstrap, source, sink, group = sys.argv[1:5]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    # The producer settings Sluice uses for at-least-once (host/src/sinks/kafka/mod.rs).
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    consumer.subscribe([source])
    while True:
        messages = consumer.consume(num_messages=BATCH, timeout=0.1)
        if not messages:
            continue
        for m in messages:
            if m.error():
                raise KafkaException(m.error())
            value = mask(m.value())
            while True:
                try:
                    producer.produce(sink, value=value, key=m.key(), headers=m.headers())
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        if producer.flush(60) != 0:
            raise RuntimeError("records still unacknowledged after 60 s")
        consumer.commit(asynchronous=True)


if __name__ == "__main__":
    main()
