"""Sends evaluation results to fledge the way an evaluator instrumented with OpenTelemetry does: the
real OTel Python SDK and its OTLP/HTTP protobuf exporter, one `gen_ai.evaluation.result` event per
result (GenAI semantic conventions).

usage: otel_evaluations.py URL TOKEN ROLLOUT VERSION NAME SCORE[:LABEL] ...
"""
import sys

from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource


def main() -> None:
    url, token, rollout, version, name, *results = sys.argv[1:]
    # The rollout and version come from the resource here (service.name / service.version).
    provider = LoggerProvider(resource=Resource.create({"service.name": rollout, "service.version": version}))
    exporter = OTLPLogExporter(endpoint=url.rstrip("/") + "/v1/logs", headers={"authorization": f"Bearer {token}"})
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("fledge-test-evaluator")
    for r in results:
        score, _, label = r.partition(":")
        attributes = {"gen_ai.evaluation.name": name, "gen_ai.evaluation.score.value": float(score)}
        if label:
            attributes["gen_ai.evaluation.score.label"] = label
        logger.emit(LogRecord(event_name="gen_ai.evaluation.result", attributes=attributes, body="evaluation"))
    provider.shutdown()
    print(f"sent {len(results)} evaluations")


if __name__ == "__main__":
    main()
