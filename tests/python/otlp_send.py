"""Sends spans with the OpenTelemetry Python SDK and its OTLP exporters (gRPC or HTTP/protobuf),
as an instrumented application would. Prints one JSON line per trace: its hex id.

usage: otlp_send.py grpc|http ENDPOINT PREFIX COUNT
  grpc ENDPOINT: 127.0.0.1:4317       http ENDPOINT: http://127.0.0.1:4318/v1/traces
Each of COUNT traces is a root span `PREFIX-root-<i>` with a child `PREFIX-child-<i>` that has
attributes and an event.
"""

import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main():
    protocol, endpoint, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": f"{prefix}-service"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=100))
    tracer = provider.get_tracer("kausal-e2e")
    ids = []
    for i in range(count):
        with tracer.start_as_current_span(f"{prefix}-root-{i}") as root:
            root.set_attribute("test.index", i)
            with tracer.start_as_current_span(f"{prefix}-child-{i}", kind=trace.SpanKind.CLIENT) as child:
                child.set_attribute("db.system", "etcd")
                child.set_attribute("test.flag", True)
                child.add_event("retrying", {"attempt": 2})
            ids.append(format(root.get_span_context().trace_id, "032x"))
    if not provider.force_flush(30_000):
        sys.exit("flush failed")
    provider.shutdown()
    for t in ids:
        print(json.dumps({"trace_id": t}))


if __name__ == "__main__":
    main()
