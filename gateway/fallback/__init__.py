"""The durable fallback for broker outages.

When Kafka cannot take a request's events within GATEWAY_DEADLINE_S, or the
producer queue is full, the gateway writes the messages it would have produced
(topic, key, value, headers) to a fallback store and answers 2xx only once that
write is durable: a PUT acknowledged by S3, or a file fsync'd (and its rename
fsync'd) on local disk. So a 2xx means the event is in Kafka or in the fallback
store. The drain (the gateway's background task while Kafka is healthy, or
`evpipe fallback drain`) re-produces each stored object and deletes it only
after every message in it was acknowledged.

Modules, one concept each: ``objects`` (the stored bytes and the object names),
``store`` (the store contract and the factory), ``local`` and ``s3`` (the two
stores, each with its claim), ``writer`` (group commit of the requests that
fail over together), ``drain`` (claim, re-produce, delete), ``service`` (what
the app wires: write, drain, readiness), ``cli`` (`evpipe fallback`).
"""
