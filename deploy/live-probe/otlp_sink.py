"""Receives OTLP over gRPC on :4317 (traces and metrics, as an OpenTelemetry Collector would) and
prints one line per span received: `span <trace id> <parent span id or -> <service.name> <name>`.
The messages are read with a few lines of protobuf wire decoding (field numbers from
opentelemetry-proto's trace.proto and common.proto) rather than generated classes."""
import sys
import time
from concurrent import futures

import grpc


def fields(data):
    """(field number, wire type, value) of a protobuf message: varints as int, length-delimited
    fields as bytes; fixed 32/64-bit fields skipped."""
    i = 0
    while i < len(data):
        key, i = varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(data, i)
        elif wire == 2:
            length, i = varint(data, i)
            value, i = data[i : i + length], i + length
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 5:
            value, i = None, i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def varint(data, i):
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def service_name(resource):
    for number, _, attribute in fields(resource):
        if number != 1:  # Resource.attributes (KeyValue)
            continue
        key = value = None
        for n, _, v in fields(attribute):
            if n == 1:
                key = v.decode()
            elif n == 2:  # AnyValue.string_value
                value = next((sv.decode() for m, _, sv in fields(v) if m == 1), None)
        if key == "service.name":
            return value
    return "?"


def export_traces(request, context):
    # ExportTraceServiceRequest.resource_spans(1) -> ResourceSpans.resource(1), .scope_spans(2)
    # -> ScopeSpans.spans(2) -> Span.trace_id(1), .parent_span_id(4), .name(5)
    for number, _, resource_spans in fields(request):
        if number != 1:
            continue
        parts = list(fields(resource_spans))
        service = next((service_name(v) for n, _, v in parts if n == 1), "?")
        for n, _, scope_spans in parts:
            if n != 2:
                continue
            for m, _, span in fields(scope_spans):
                if m != 2:
                    continue
                got = {k: v for k, _, v in fields(span) if k in (1, 4, 5)}
                parent = got.get(4) or b""
                print(
                    "span",
                    got.get(1, b"").hex(),
                    parent.hex() if parent else "-",
                    service,
                    got.get(5, b"").decode(errors="replace").replace(" ", "_"),
                    flush=True,
                )
    return b""  # ExportTraceServiceResponse, empty


def export_metrics(request, context):
    return b""  # ExportMetricsServiceResponse, empty


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService",
                {"Export": grpc.unary_unary_rpc_method_handler(export_traces)},
            ),
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.metrics.v1.MetricsService",
                {"Export": grpc.unary_unary_rpc_method_handler(export_metrics)},
            ),
        )
    )
    server.add_insecure_port("0.0.0.0:4317")
    server.start()
    print("otlp-sink: listening on :4317", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
